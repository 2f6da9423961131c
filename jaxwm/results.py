"""The results contract: one JSON object per launcher run.

``docs/results_contract.md`` lists every field and metric name.

Besides what was run and measured (``experiment``, ``config``, ``dataset``,
``model``, ``seed``, ``metrics``, ``wall_s``, ``device``, ``jax_version``)
every results JSON records

* ``status``: ``"ok"``; ``"partial"`` when some value could not be computed
  (each such value is written as ``{"error": reason}`` in ``metrics`` and
  listed, by its path, in ``incomplete``); or ``"failed"`` when the run
  raised, with ``error`` holding the exception's type, message and
  traceback and ``metrics`` whatever was measured before it;
* its provenance: ``fingerprint`` (of the resolved config and the jaxwm and
  jax versions), ``jaxwm_version``, ``git_commit`` and ``git_dirty`` of the
  source tree (null outside a git checkout), ``command`` (the command line,
  shell-quoted) and ``started`` (ISO-8601, UTC).

A metric must be finite: a NaN or infinite one is written as
``{"error": ...}`` and fails the run.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import shlex
import subprocess
import sys
import traceback
from typing import Any, Mapping

import jax
import numpy as np

import jaxwm
from jaxwm.fingerprint import fingerprint

STATUSES = ("ok", "partial", "failed")
ERROR = "error"


def not_computed(reason: str) -> dict[str, str]:
  """The entry of a value that could not be computed: ``{"error": reason}``."""
  return {ERROR: reason}


def incomplete_values(metrics: Mapping[str, Any],
                      prefix: str = "metrics") -> dict[str, str]:
  """{path: reason} of every ``{"error": reason}`` entry in ``metrics``."""
  found = {}
  for name, value in metrics.items():
    path = f"{prefix}.{name}"
    if isinstance(value, Mapping):
      if ERROR in value:
        found[path] = str(value[ERROR])
      else:
        found.update(incomplete_values(value, path))
  return found


def _jsonable(value: Any, path: str, non_finite: list[str]) -> Any:
  """``value`` as JSON types; non-finite numbers become error entries and
  their paths are appended to ``non_finite``."""
  if isinstance(value, Mapping):
    return {str(k): _jsonable(v, f"{path}.{k}", non_finite)
            for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v, f"{path}[{i}]", non_finite)
            for i, v in enumerate(value)]
  if isinstance(value, (np.ndarray, jax.Array)):
    return _jsonable(np.asarray(value).tolist(), path, non_finite)
  if isinstance(value, np.generic):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    non_finite.append(path)
    return not_computed(f"the value is {value}, not a finite number")
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  return str(value)


def _git(root: str, *args: str) -> str | None:
  try:
    done = subprocess.run(["git", "-C", root, *args], capture_output=True,
                          text=True, timeout=10, check=True)
  except (OSError, subprocess.SubprocessError):
    return None
  return done.stdout.strip()


def source_revision() -> tuple[str | None, bool | None]:
  """(commit, dirty) of the git checkout jaxwm is imported from.

  Both are None when jaxwm does not lie at the top of a git work tree (an
  installed wheel, no git on the PATH).
  """
  root = os.path.dirname(os.path.dirname(os.path.abspath(jaxwm.__file__)))
  top = _git(root, "rev-parse", "--show-toplevel")
  if top is None or os.path.realpath(top) != os.path.realpath(root):
    return None, None
  commit = _git(root, "rev-parse", "HEAD")
  changes = _git(root, "status", "--porcelain", "--untracked-files=no")
  return commit, None if changes is None else bool(changes)


def now_utc() -> str:
  """The current time, ISO-8601 in UTC to the second."""
  return datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds")


def config_dict(config: Any) -> dict[str, Any]:
  """The resolved config as JSON types."""
  plain = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  return json.loads(json.dumps(plain, default=str))


def provenance(config: Any, *, command: str | None = None,
               started: str | None = None,
               revision: tuple[str | None, bool | None] | None = None
               ) -> dict[str, Any]:
  """The provenance fields of a results JSON (module docstring).

  Args:
    config: the resolved ConfigDict (or a plain mapping).
    command: the command line; default ``sys.argv``, shell-quoted.
    started: ISO-8601 start time; default now.
    revision: (commit, dirty) of the code that ran, taken when the run
      started (:func:`source_revision`; the checkout may move on while a
      long run goes); default now.
  """
  commit, dirty = source_revision() if revision is None else revision
  return {
      "fingerprint": fingerprint(config_dict(config), jaxwm.__version__,
                                 jax.__version__),
      "jaxwm_version": jaxwm.__version__,
      "jax_version": jax.__version__,
      "git_commit": commit,
      "git_dirty": dirty,
      "command": shlex.join(sys.argv) if command is None else command,
      "started": now_utc() if started is None else started,
  }


def error_entry(error: BaseException) -> dict[str, str]:
  """The ``error`` field of a failed run: type, message and traceback."""
  return {"type": type(error).__name__, "message": str(error),
          "traceback": "".join(traceback.format_exception(error))}


def build_results(*, experiment: str, config: Any, dataset: str, model: str,
                  seed: int, metrics: Mapping[str, Any], wall_s: float,
                  error: BaseException | None = None,
                  command: str | None = None,
                  started: str | None = None,
                  revision: tuple[str | None, bool | None] | None = None
                  ) -> dict[str, Any]:
  """The results JSON of a run as a dict (module docstring).

  Args:
    experiment: launcher name, e.g. ``"train"`` or ``"craft_poison"``.
    config: the resolved ConfigDict (or a plain mapping).
    dataset, model, seed: what was run.
    metrics: named metrics (``benign_accuracy``, ``asr_a``, ``p_value``...),
      values not computed as ``{"error": reason}``.
    wall_s: wall-clock seconds of the run.
    error: the exception that ended the run, if any (status ``"failed"``).
    command, started, revision: see :func:`provenance`.
  """
  non_finite: list[str] = []
  values = _jsonable(dict(metrics), "metrics", non_finite)
  if error is None and non_finite:
    error = ValueError(
        f"{', '.join(non_finite)} is not finite; a result must be a finite "
        "number (a diverged or broken model?).")
  incomplete = incomplete_values(values)
  status = "failed" if error is not None else (
      "partial" if incomplete else "ok")
  return {
      "experiment": experiment,
      "status": status,
      "error": None if error is None else error_entry(error),
      "incomplete": incomplete,
      "config": config_dict(config),
      "dataset": dataset,
      "model": model,
      "seed": int(seed),
      "metrics": values,
      "wall_s": float(wall_s),
      "device": jax.devices()[0].platform,
      **provenance(config, command=command, started=started,
                   revision=revision),
  }


def save_results(path: str, results: Mapping[str, Any]) -> None:
  """Writes ``results`` to ``path`` as JSON (atomically; parents made)."""
  path = os.path.abspath(path)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  partial = f"{path}.tmp"
  with open(partial, "w") as f:
    json.dump(results, f, indent=1, sort_keys=True, allow_nan=False)
  os.replace(partial, path)


def write_results(path: str, **fields: Any) -> dict[str, Any]:
  """:func:`build_results` written to ``path``; returns the dict."""
  results = build_results(**fields)
  save_results(path, results)
  return results


def summary(results: Mapping[str, Any]) -> str:
  """A few lines for the terminal: status, error or missing values, the
  top-level numbers of ``metrics`` (and objects of numbers, such as
  ``p_value`` keyed by scenario), then a table of every verdict in
  ``metrics`` (:func:`verdict_table`)."""
  lines = [f"{results['experiment']}: {results['status']} "
           f"({results['wall_s']:.1f} s, {results['dataset']}, "
           f"{results['model']}, seed {results['seed']})"]
  if results["error"]:
    lines.append(f"  failed: {results['error']['type']}: "
                 f"{results['error']['message']}")
  for path, reason in results["incomplete"].items():
    lines.append(f"  not computed: {path}: {reason}")
  for name, value in sorted(results["metrics"].items()):
    if _is_number(value):
      lines.append(f"  {name} {_short(value)}")
    elif isinstance(value, Mapping) and value and all(
        _is_number(v) for v in value.values()):
      lines.append(f"  {name} " + " ".join(
          f"{k}={_short(v)}" for k, v in value.items()))
  table = verdict_table(results["metrics"])
  return "\n".join(lines + ([table] if table else []))


def _verdicts(metrics: Mapping[str, Any], prefix: str = ""
              ) -> list[tuple[str, Mapping[str, Any]]]:
  """(path, entry) of every entry with a ``p_value`` and a ``decision``."""
  found = []
  for name, value in metrics.items():
    if isinstance(value, Mapping):
      path = f"{prefix}{name}"
      if "p_value" in value and "decision" in value:
        found.append((path, value))
      else:
        found.extend(_verdicts(value, f"{path}."))
  return found


def verdict_table(metrics: Mapping[str, Any]) -> str:
  """One line per verdict of ``metrics``: its path, p-value, alpha and
  decision, with Delta P (dataset watermarks) or the agreement (model
  watermarks) where the verdict has one; "" when there is none."""
  verdicts = _verdicts(metrics)
  if not verdicts:
    return ""
  width = max(len(path) for path, _ in verdicts)
  lines = [f"  {'verdict':<{width}}  {'p':>9}  {'alpha':>5}  "
           f"{'effect':>14}  decision"]
  for path, entry in verdicts:
    effect = next((f"{label} {entry[name]:.3f}" for name, label in
                   (("delta_p", "Delta P"), ("watermark_accuracy", "agree"))
                   if name in entry), "")
    lines.append(f"  {path:<{width}}  {entry['p_value']:>9.2e}  "
                 f"{_short(entry.get('alpha', 'n/a')):>5}  {effect:>14}  "
                 f"{entry['decision']}")
  return "\n".join(lines)


def _is_number(value: Any) -> bool:
  return isinstance(value, (bool, int, float))


def _short(value: Any) -> str:
  return f"{value:.4g}" if isinstance(value, float) else str(value)
