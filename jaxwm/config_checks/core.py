"""Bad settings, the error that lists them all, and checks of single fields.

A check never stops at the first bad value: it records a :class:`Problem`
(the field's dotted path, the value as the user typed it and what to do
instead) and goes on, so that one :class:`ConfigError` reports everything
that is wrong before any model is trained, any poison crafted or any
suspect queried.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Iterable, Sequence


class _Missing:
  """The value of a field that the config lacks."""

  def __repr__(self) -> str:
    return "<missing>"


MISSING = _Missing()


@dataclasses.dataclass(frozen=True)
class Problem:
  """One bad setting.

  Attributes:
    field: the dotted path of the field (``train.batch_size``) or the name
      of a function argument or flag (``tau``, ``--workdir``).
    value: the value as typed, in the units of the config.
    fix: what the value must be, with an example where one helps.
  """

  field: str
  value: Any
  fix: str

  def __str__(self) -> str:
    return f"{self.field}={self.value!r}: {self.fix}"


class ConfigError(ValueError):
  """Every bad setting of a run, found before any work was done.

  Attributes:
    problems: the :class:`Problem` of each bad setting, in the order found.
  """

  def __init__(self, problems: Sequence[Problem]):
    self.problems = tuple(problems)
    count = len(self.problems)
    lines = "".join(f"\n  {problem}" for problem in self.problems)
    super().__init__(f"{count} bad setting{'s' if count != 1 else ''} "
                     f"(nothing was run):{lines}")


def raise_problems(problems: Iterable[Problem]) -> None:
  """Raises one :class:`ConfigError` listing ``problems``, if there are any."""
  problems = list(problems)
  if problems:
    raise ConfigError(problems)


def _bounds(low, high, low_open: bool, high_open: bool) -> str:
  """``>= 1``, ``> 0``, ``<= 1`` or ``in (0, 1]`` for the given bounds."""
  if low is not None and high is not None:
    return (f"in {'(' if low_open else '['}{low}, "
            f"{high}{')' if high_open else ']'}")
  if low is not None:
    return f"{'>' if low_open else '>='} {low}"
  if high is not None:
    return f"{'<' if high_open else '<='} {high}"
  return ""


def _in_bounds(value, low, high, low_open: bool, high_open: bool) -> bool:
  if low is not None and (value <= low if low_open else value < low):
    return False
  return high is None or not (value >= high if high_open else value > high)


def is_integer(value: Any) -> bool:
  """Python or NumPy integers, not booleans."""
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def require_integer(name: str, value: Any, low: int | None = None,
                    high: int | None = None, *, note: str = "") -> None:
  """Raises ValueError naming ``name`` and ``value`` unless ``value`` is an
  integer (:func:`is_integer`) within [low, high]; ``note`` follows the
  bounds in the message (e.g. what a bound means)."""
  if not (is_integer(value) and _in_bounds(value, low, high, False, False)):
    bounds = _bounds(low, high, False, False)
    raise ValueError(f"{name} must be an integer {bounds}{note}".rstrip() +
                     f", got {value!r}.")


def is_number(value: Any) -> bool:
  """Finite real numbers, not booleans."""
  return (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(value))


class Fields:
  """The fields of one config block (or of a function's arguments), checked
  one at a time.

  Each check records a :class:`Problem` named by the field's path and
  returns whether the value passed, so that checks depending on it can be
  skipped. ``example`` arguments end the fix with a working setting, as a
  ``--config`` override for config blocks.

  Args:
    block: a ConfigDict, dict or None (a missing block: every field is
      missing).
    path: the block's dotted path in the config (``"train"``), ``""`` for
      the config's top level or for function arguments.
    problems: the list the problems go to.
    flags: whether the block belongs to a launcher's ``--config`` (examples
      are then written as ``--config.PATH=VALUE``).
  """

  def __init__(self, block: Any, path: str, problems: list[Problem],
               flags: bool = True):
    self.block = block
    self.path = path
    self.problems = problems
    self.flags = flags

  def name(self, field: str) -> str:
    """The dotted path of ``field``."""
    return f"{self.path}.{field}" if self.path else field

  def block_of(self, field: str) -> Fields:
    """The fields of the sub-block ``field`` (missing ones are reported)."""
    value = self.get(field)
    return Fields(None if value is MISSING else value, self.name(field),
                  self.problems, self.flags)

  def has(self, field: str) -> bool:
    return self.block is not None and field in self.block

  def get(self, field: str, optional: bool = False) -> Any:
    """The value of ``field``; MISSING (reported unless ``optional``)."""
    if self.has(field):
      return self.block[field]
    if not optional and self.block is not None:
      self.fail(field, MISSING, "the config has no such field; give the "
                "launcher its own config file (its --help shows one).")
    return MISSING

  def fail(self, field: str, value: Any, fix: str) -> bool:
    """Records a problem with ``field``; returns False."""
    self.problems.append(Problem(self.name(field), value, fix))
    return False

  def example(self, field: str, value: Any) -> str:
    """``, e.g. --config.PATH=VALUE.`` (or ``, e.g. PATH=VALUE.``)."""
    if value is None:
      return "."
    prefix = "--config." if self.flags else ""
    return f", e.g. {prefix}{self.name(field)}={value}."

  def _checked(self, field: str, optional: bool, allow_none: bool):
    """(whether there is a value to check, the value): not for a missing
    field (reported unless ``optional``) or an allowed None."""
    value = self.get(field, optional=optional)
    return not (value is MISSING or (allow_none and value is None)), value

  @staticmethod
  def _unchecked(value: Any, optional: bool) -> bool:
    """What a check without a value returns: False where ``get`` reported a
    missing field, True for an optional one or an allowed None."""
    return value is not MISSING or optional

  def integer(self, field: str, low: int | None = None,
              high: int | None = None, *, example: Any = None,
              optional: bool = False, allow_none: bool = False) -> bool:
    """An integer (not a bool) within [low, high]."""
    go, value = self._checked(field, optional, allow_none)
    if not go:
      return self._unchecked(value, optional)
    if is_integer(value) and _in_bounds(value, low, high, False, False):
      return True
    kind = "an integer" + (" or None" if allow_none else "")
    return self.fail(field, value, f"must be {kind} "
                     f"{_bounds(low, high, False, False)}".rstrip() +
                     self.example(field, example))

  def number(self, field: str, low: float | None = None,
             high: float | None = None, *, low_open: bool = False,
             high_open: bool = False, example: Any = None, units: str = "",
             optional: bool = False, allow_none: bool = False) -> bool:
    """A finite real number within the bounds (open where asked)."""
    go, value = self._checked(field, optional, allow_none)
    if not go:
      return self._unchecked(value, optional)
    if is_number(value) and _in_bounds(value, low, high, low_open,
                                       high_open):
      return True
    kind = "a number" + (" or None" if allow_none else "")
    bounds = _bounds(low, high, low_open, high_open)
    return self.fail(field, value, f"must be {kind} {bounds}".rstrip() +
                     (f" ({units})" if units else "") +
                     self.example(field, example))

  def choice(self, field: str, options: Sequence[str], *,
             optional: bool = False, allow_none: bool = False) -> bool:
    """One of ``options``."""
    go, value = self._checked(field, optional, allow_none)
    if not go:
      return self._unchecked(value, optional)
    if isinstance(value, str) and value in options:
      return True
    return self.fail(field, value, "must be one of " + ", ".join(options) +
                     (" or None" if allow_none else "") + ".")

  def boolean(self, field: str, *, optional: bool = False) -> bool:
    """True or False."""
    go, value = self._checked(field, optional, False)
    if not go:
      return self._unchecked(value, optional)
    if isinstance(value, bool):
      return True
    return self.fail(field, value, "must be True or False.")

  def sequence(self, field: str, low: float | None = None,
               high: float | None = None, *, integer: bool = True,
               low_open: bool = False, high_open: bool = False,
               increasing: bool = False, nonempty: bool = False,
               length: int | None = None, example: Any = None,
               optional: bool = False, allow_none: bool = False) -> bool:
    """A tuple of integers (or numbers) within the bounds; increasing, of a
    given length or non-empty where asked."""
    go, value = self._checked(field, optional, allow_none)
    if not go:
      return self._unchecked(value, optional)
    is_item = is_integer if integer else is_number
    items = list(value) if isinstance(value, (list, tuple)) else None
    ok = items is not None and all(
        is_item(item) and _in_bounds(item, low, high, low_open, high_open)
        for item in items)
    ok = ok and (not nonempty or bool(items)) and (
        length is None or len(items) == length) and (
            not increasing or all(a < b for a, b in zip(items, items[1:])))
    if ok:
      return True
    wanted = " ".join(filter(None, (
        "one or more" if nonempty else "", str(length) if length else "",
        "increasing" if increasing else "",
        "integers" if integer else "numbers",
        _bounds(low, high, low_open, high_open))))
    return self.fail(field, value, f"must be a tuple of {wanted}" +
                     (" or None" if allow_none else "") +
                     self.example(field, example))

  def names(self, field: str, options: Sequence[str], *,
            nonempty: bool = True) -> bool:
    """A sequence of names, each one of ``options``."""
    go, value = self._checked(field, False, False)
    if not go:
      return self._unchecked(value, False)
    items = list(value) if isinstance(value, (list, tuple)) else None
    if items is not None and (items or not nonempty) and all(
        isinstance(item, str) and item in options for item in items):
      return True
    return self.fail(field, value, "must be a tuple of names from " +
                     ", ".join(options) +
                     self.example(field, f'"{tuple(options[:2])!r}"'))

  def known(self, allowed: Iterable[str], what: str) -> bool:
    """Whether the block holds only fields in ``allowed``."""
    if self.block is None:
      return True
    allowed = tuple(allowed)
    unknown = [field for field in self.block if field not in allowed]
    for field in unknown:
      self.fail(field, self.block[field], f"{what} has no such field; its "
                f"fields are {', '.join(allowed)}.")
    return not unknown
