"""The results contract: one JSON object per launcher run (see DESIGN.md)."""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

import jax


def _finite(name: str, value: Any) -> Any:
  if isinstance(value, Mapping):
    return {k: _finite(f"{name}.{k}", v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_finite(f"{name}[{i}]", v) for i, v in enumerate(value)]
  if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    raise ValueError(f"metric {name} is {value}; a result must be finite.")
  return value


def write_results(path: str, *, experiment: str, config: Any, dataset: str,
                  model: str, seed: int, metrics: Mapping[str, Any],
                  wall_s: float) -> dict[str, Any]:
  """Writes the results JSON of DESIGN.md to ``path`` and returns it.

  Args:
    path: output file; parent directories are created.
    experiment: launcher name, e.g. ``"train"`` or ``"ubw_p"``.
    config: the resolved ConfigDict (or a plain mapping).
    dataset, model, seed: what was run.
    metrics: named metrics (``benign_accuracy``, ``asr_a``, ``p_value``...);
      every number must be finite.
    wall_s: wall-clock seconds of the run.
  """
  config_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  result = {
      "experiment": experiment,
      "config": json.loads(json.dumps(config_dict, default=str)),
      "dataset": dataset,
      "model": model,
      "seed": int(seed),
      "metrics": _finite("metrics", dict(metrics)),
      "wall_s": float(wall_s),
      "device": jax.devices()[0].platform,
      "jax_version": jax.__version__,
  }
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(result, f, indent=1, sort_keys=True)
  return result
