"""Strict checks of the integer, number and index fields of datasets and keys,
and of the names in a settings block.

A key read from a file must not turn ``num_classes: 10.5`` into 10, ``true``
into 1 or a float index array into integers: each check here accepts only
values that are already of the right kind (Python or NumPy integers, not
bools; finite reals) and in range, and raises ValueError naming the field and
the value otherwise. Key loaders report these errors as
:class:`jaxwm.secure_files.TamperedFileError`.
"""

from __future__ import annotations

import dataclasses
import math
import string
from typing import Any, Iterable

import numpy as np

_SHA256_HEX_DIGITS = 64


def _range_text(low: int | None, high: int | None) -> str:
  if low is not None and high is not None:
    return f" in [{low}, {high})"
  if low is not None:
    return f" >= {low}"
  return "" if high is None else f" < {high}"


def integer(value: Any, name: str, low: int | None = None,
            high: int | None = None) -> int:
  """``value`` as an int, if it is an integer in ``[low, high)``.

  Args:
    value: a Python or NumPy integer; bools and floats (even 3.0) are
      refused.
    name: the field's name, for the message.
    low, high: inclusive lower and exclusive upper bound; None for none.

  Raises:
    ValueError: naming ``name``, ``value`` and the range.
  """
  if isinstance(value, (bool, np.bool_)) or not isinstance(
      value, (int, np.integer)):
    raise ValueError(f"{name} must be an integer{_range_text(low, high)}, "
                     f"got {value!r}.")
  value = int(value)
  if (low is not None and value < low) or (high is not None and
                                           value >= high):
    raise ValueError(f"{name} must be an integer{_range_text(low, high)}, "
                     f"got {value}.")
  return value


def integers(values: Iterable[Any], name: str, low: int | None = None,
             high: int | None = None) -> tuple[int, ...]:
  """Each of ``values`` checked by :func:`integer`; a string is refused."""
  if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
    raise ValueError(f"{name} must be a sequence of integers, got "
                     f"{values!r}.")
  return tuple(integer(v, f"{name} entry", low, high) for v in values)


def number(value: Any, name: str) -> float:
  """``value`` as a float, if it is a finite real number (not a bool).

  Raises:
    ValueError: naming ``name`` and ``value``.
  """
  if isinstance(value, (bool, np.bool_)) or not isinstance(
      value, (int, float, np.integer, np.floating)) or not math.isfinite(
          value):
    raise ValueError(f"{name} must be a finite number, got {value!r}.")
  return float(value)


def index_array(values: Any, name: str,
                size: int | None = None) -> np.ndarray:
  """Sorted, distinct indices in ``[0, size)`` as int64 [M].

  Args:
    values: a 1-D integer array or sequence (bool and float arrays are
      refused; an empty one of any dtype is the empty index set).
    name: the field's name, for the message.
    size: the number of samples indexed; None checks only ``>= 0``.

  Raises:
    ValueError: naming ``name`` and the offending dtype, shape or index.
  """
  array = np.asarray(values)
  if array.size == 0:
    return np.zeros(0, np.int64)
  if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
    raise ValueError(f"{name} must be a 1-D integer array, got "
                     f"{array.dtype} {array.shape}.")
  array = array.astype(np.int64)
  if np.any(np.diff(array) <= 0):
    raise ValueError(f"{name} must be sorted and distinct.")
  outside = (array < 0) | (array >= (np.inf if size is None else size))
  if outside.any():
    raise ValueError(
        f"{name} holds index {array[outside.argmax()]}, outside [0, "
        f"{'N' if size is None else size}) of the dataset.")
  return array


def key_data(value: Any, name: str = "seed") -> np.ndarray:
  """The raw data of a jax.random key: uint32 [k], k >= 1.

  Raises:
    ValueError: naming the dtype and shape found.
  """
  array = np.asarray(value)
  if array.dtype != np.uint32 or array.ndim != 1 or not array.size:
    raise ValueError(f"{name} must be 1-D uint32 key data, got {array.dtype} "
                     f"{array.shape}; pass jax.random.key_data(key).")
  return array


def hex_digest(value: Any, name: str, origin: str) -> str:
  """``value`` in lower case, if it is a SHA-256 hex string (64 digits).

  Args:
    value: the digest typed or kept.
    name: the field's name, for the message.
    origin: where a valid value comes from, for the message (e.g. "that
      save returned").

  Raises:
    ValueError: naming ``name``, ``value`` and ``origin``.
  """
  if not (isinstance(value, str) and len(value) == _SHA256_HEX_DIGITS and
          all(c in string.hexdigits for c in value)):
    raise ValueError(f"{name} must be the {_SHA256_HEX_DIGITS}-digit hex "
                     f"SHA-256 {origin}, got {value!r}.")
  return value.lower()


def known_settings(kind: Any, values: Any, block: str) -> None:
  """Raises ValueError naming the keys of ``values`` that are not fields of
  the dataclass ``kind`` (a config block's settings, named ``block``)."""
  known = {f.name for f in dataclasses.fields(kind)}
  unknown = sorted(set(values) - known)
  if unknown:
    raise ValueError(f"unknown {block} settings {unknown}; known: "
                     f"{sorted(known)}.")
