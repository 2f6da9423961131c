"""Does an availability poison stay aligned along a victim's training?

:func:`run_transfer` is the whole ``experiments/alignment_transfer.py`` job.
It reuses (or makes) the surrogate and the poison of
:mod:`jaxwm.recipes.craft_poison` with the same config and workdir, then
trains its poisoned victim again while measuring, after every epoch, the
poison's alignment at the victim's parameters
(:func:`jaxwm.alignment.alignment_curve`); the same alignment at the
surrogate's parameters, where the poison was crafted, is reported beside
it. With ``random_noise`` both are the baseline of a perturbation that was
never aligned (the surrogate is then trained for the probe alone, in the
folder the other methods share).
"""

from __future__ import annotations

from typing import Any

from jaxwm import alignment
from jaxwm.poison import availability
from jaxwm.recipes import craft_poison


def run_transfer(config, workdir: str,
                 metrics: dict[str, Any] | None = None) -> dict[str, Any]:
  """The surrogate's alignment and the victim's curve, into ``metrics``
  (default a new dict); the launcher's ``outcome``."""
  metrics = {} if metrics is None else metrics
  if config.method not in availability.METHODS:
    raise ValueError(
        f"method {config.method!r} is not an availability poison; use one "
        f"of {availability.METHODS}.")
  if config.defense.name != "none":
    raise ValueError(
        f"defense {config.defense.name!r}: the curve follows the undefended "
        "victim; set --config.defense.name=none.")
  crafted = craft_poison.craft_poison(config, workdir)
  victims = craft_poison.victim_config(config)
  surrogate = crafted.surrogate or craft_poison.train_surrogate(
      config, crafted.train, workdir)
  probe = alignment.alignment_probe(
      surrogate.model, crafted.poisoned, crafted.train,
      batch_size=config.train.batch_size)
  metrics["surrogate"] = probe(surrogate.variables)
  metrics["curve"] = alignment.alignment_curve(
      victims, crafted.poisoned, crafted.train, crafted.test,
      stream=craft_poison.victim_stream(victims),
      folder=craft_poison.victim_dir(crafted.folder, "alignment_curve",
                                     victims))
  return {"dataset": config.dataset, "model": config.model,
          "metrics": metrics}
