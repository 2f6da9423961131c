"""What every verifier's false-acceptance summary reports: an acceptance
rate with its one-sided 95% Clopper-Pearson upper bound, and the spread
of the never-marked models' p-values."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy import stats

from jaxwm import monitor

# The quantiles of log10 p reported, by name.
QUANTILES = {"min": 0.0, "q05": 0.05, "q25": 0.25, "median": 0.5,
             "q75": 0.75, "max": 1.0}


def upper_95(accepted: int, models: int) -> float:
  """One-sided 95% Clopper-Pearson upper bound of an acceptance rate."""
  test = stats.binomtest(accepted, models, alternative="less")
  return float(test.proportion_ci(0.95, method="exact").high)


def acceptance(accepted: int, models: int, suffix: str = ""
               ) -> dict[str, Any]:
  """``false_acceptance_rate``, ``accepted`` and ``rate_upper_95`` of
  ``accepted`` acceptances among ``models`` models (each name followed by
  ``suffix``)."""
  return {f"false_acceptance_rate{suffix}": accepted / models,
          f"accepted{suffix}": int(accepted),
          f"rate_upper_95{suffix}": upper_95(accepted, models)}


def log10_quantiles(log10_p_values: Sequence[float]) -> dict[str, float]:
  """The :data:`QUANTILES` of the models' log10 p-values (float [N])."""
  values = np.asarray(log10_p_values, np.float64)
  return {name: float(np.quantile(values, q))
          for name, q in QUANTILES.items()}


def picture_p_values(p_values: Sequence[float], alpha: float,
                     title: str) -> None:
  """Histogram of the never-marked models' p-values (``p_values.png``,
  log10, with alpha)."""
  monitor.add_histogram("p_values", list(p_values), xlabel="p-value",
                        log10=True, lines={f"alpha = {alpha:g}": alpha},
                        title=title)
