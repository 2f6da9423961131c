"""Markdown tables of result JSONs, one builder per experiment.

Each builder takes the runs of one folder (:class:`Run`, all of one
``experiment``) and returns Markdown: a line naming the definitions the
figures use (which test images, which Independent-T, which p-value, which
acceptance rule), then the tables. Runs whose config differs only in its
seed are summarised by a row of means with a 95% confidence interval
(Student's t over the seeds). JSONs written before a definition changed
are recognised by the fields they lack and labelled as such:

* dataset watermarks without ``source_classes``: measured on every class,
  with the former Independent-T (a model trained with another trigger);
* verification results without ``p_value_definition``: the t-test's
  p-value as recorded, before the 2^-m floor, with no t statistic,
  degrees of freedom or log10 p;
* model-watermark verdicts without ``accepted_threshold``: the binomial
  test's decision only.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy import stats

MISSING = "n/a"
P_VALUE_DEFINITIONS = {
    "sign_floored_ttest": "the one-sided paired t-test's p-value, floored "
                          "at the exact sign test's 2^-m (jaxwm's "
                          "definition)",
}
PRE_CHANGE_P = ("the t-test's p-value as the run recorded it (before the "
                "2^-m floor; no t statistic, dof or log10 p recorded)")


@dataclasses.dataclass(frozen=True)
class Run:
  """One result JSON: its file name (without ``.json``) and contents."""

  name: str
  data: Mapping[str, Any]

  @property
  def experiment(self) -> str:
    return self.data["experiment"]

  @property
  def metrics(self) -> Mapping[str, Any]:
    return self.data["metrics"]

  @property
  def config(self) -> Mapping[str, Any]:
    return self.data["config"]

  @property
  def seed(self) -> int:
    return self.data["seed"]

  def setting(self) -> str:
    """The config without its seed: runs of one setting differ by seed."""
    return json.dumps({k: v for k, v in self.config.items() if k != "seed"},
                      sort_keys=True)


def lookup(mapping: Any, path: str, default: Any = None) -> Any:
  """``mapping["a"]["b"]`` for ``path`` ``"a.b"``; ``default`` if absent."""
  for part in path.split("."):
    if not isinstance(mapping, Mapping) or part not in mapping:
      return default
    mapping = mapping[part]
  return mapping


def number(value: Any) -> float | None:
  """``value`` if it is a number (not a bool), else None (an error entry
  or a missing value)."""
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    return float(value)
  return None


def fixed(digits: int) -> Callable[[Any], str]:
  """A formatter with ``digits`` decimals; ``n/a`` for a non-number."""

  def cell(value: Any) -> str:
    value = number(value)
    return MISSING if value is None else f"{value:.{digits}f}"

  return cell


def p_value(value: Any) -> str:
  """A p-value: two significant digits from 0.01 up, else ``9.1e-63``."""
  value = number(value)
  if value is None:
    return MISSING
  return f"{value:.2g}" if value >= 0.01 else f"{value:.1e}"


def yes_no(value: Any) -> str:
  return {True: "yes", False: "no"}.get(value, "not recorded")


def mean_interval(values: Sequence[Any],
                  cell: Callable[[Any], str]) -> str:
  """``mean ± half-width`` of the 95% Student-t interval of the mean of the
  numbers in ``values``; empty for fewer than two."""
  numbers = [v for v in map(number, values) if v is not None]
  if len(numbers) < 2:
    return ""
  mean = float(np.mean(numbers))
  half = float(stats.t.ppf(0.975, len(numbers) - 1) *
               np.std(numbers, ddof=1) / math.sqrt(len(numbers)))
  return f"{cell(mean)} ± {cell(half)}"


@dataclasses.dataclass(frozen=True)
class Column:
  """A table column.

  Attributes:
    header: its header.
    value: the run's value (a number, a string, an error entry...).
    fmt: the value as a cell.
    summary: how runs of one setting are summarised: ``"mean"`` (mean ±
      95% interval), ``"rejections"`` (how many p-values fall below alpha)
      or None (blank).
  """

  header: str
  value: Callable[[Run], Any]
  fmt: Callable[[Any], str] = str
  summary: str | None = None

  def cell(self, run: Run) -> str:
    return self.fmt(self.value(run))

  def summarise(self, runs: Sequence[Run], alpha: float) -> str:
    values = [self.value(run) for run in runs]
    if self.summary == "mean":
      return mean_interval(values, self.fmt)
    if self.summary == "rejections":
      numbers = [v for v in map(number, values) if v is not None]
      return f"{sum(v < alpha for v in numbers)} of {len(numbers)} < {alpha:g}"
    return ""


def markdown_table(header: Sequence[str],
                   rows: Sequence[Sequence[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |",
           "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines)


def table(columns: Sequence[Column], runs: Sequence[Run],
          alpha: float = 0.01, summarise: bool = True) -> str:
  """One row per run in file-name order, then, unless ``summarise`` is
  False, for every setting run with two or more seeds a row summarising
  them (its first cell names the runs)."""
  rows = [[column.cell(run) for column in columns] for run in runs]
  settings: dict[str, list[Run]] = {}
  for run in runs:
    settings.setdefault(run.setting(), []).append(run)
  for group in settings.values():
    if len(group) < 2 or not summarise:
      continue
    label = ("mean ± 95% CI of "
             f"{', '.join(f'`{run.name}`' for run in group)}")
    rows.append([label] + [column.summarise(group, alpha)
                           for column in columns[1:]])
  return markdown_table([column.header for column in columns], rows)


def metric(header: str, path: str, fmt: Callable[[Any], str],
           summary: str | None = "mean", within: str = "") -> Column:
  """A column of the metric at ``path`` (under ``within``, e.g.
  ``all_classes``)."""
  full = f"{within}.{path}" if within else path
  return Column(header, lambda run: lookup(run.metrics, full), fmt, summary)


def setting(header: str, path: str, fmt: Callable[[Any], str] = str
            ) -> Column:
  """A column of the config field at ``path``."""
  return Column(header, lambda run: lookup(run.config, path), fmt)


RUN = Column("run", lambda run: run.name, lambda name: f"`{name}`")
SEED = Column("seed", lambda run: run.seed)


def p_value_definition(runs: Sequence[Run], paths: Sequence[str]) -> str:
  """How the p-values of ``runs`` were defined, read from the verification
  entries at ``paths`` of their metrics."""
  found = {lookup(run.metrics, f"{path}.p_value_definition")
           for run in runs for path in paths}
  found.discard(None)
  texts = [P_VALUE_DEFINITIONS.get(name, name) for name in sorted(found)]
  entries = [lookup(run.metrics, path) for run in runs for path in paths]
  if any(isinstance(e, Mapping) and "p_value" in e and
         "p_value_definition" not in e for e in entries) or not texts:
    texts.append(PRE_CHANGE_P)
  return "; ".join(texts)


def alpha_of(runs: Sequence[Run]) -> float:
  """The runs' significance level (``verify.alpha``, else 0.01)."""
  return float(lookup(runs[0].config, "verify.alpha", 0.01))
