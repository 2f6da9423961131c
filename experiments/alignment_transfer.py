r"""Does an availability poison stay aligned along a victim's training?

  python -m experiments.alignment_transfer \
      --config=configs/craft_poison.py:availability,fashion_mnist,cnn \
      --workdir=/tmp/poison --output_json=/tmp/alignment_transfer.json

Reuses (or makes) the surrogate and the poison of
``experiments/craft_poison.py`` with the same ``--config`` and
``--workdir``, then trains its poisoned victim again while measuring, after
every epoch, the poison's alignment at the victim's parameters
(:mod:`jaxwm.poison.alignment_transfer`); the same alignment at the
surrogate's parameters, where the poison was crafted, is reported beside
it. With ``random_noise`` both are the baseline of a perturbation that was
never aligned (the surrogate is then trained for the probe alone, in the
folder the other methods share).
"""

from __future__ import annotations

from typing import Any

from absl import app

from jaxwm import launch
from jaxwm.config_checks import launchers
from jaxwm.poison import alignment_transfer, availability, craft_experiment


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
  crafted = craft_experiment.craft_poison(config, workdir)
  victims = craft_experiment.victim_config(config)
  surrogate = crafted.surrogate or craft_experiment.train_surrogate(
      config, crafted.train, workdir)
  probe = alignment_transfer.alignment_probe(
      surrogate.model, crafted.poisoned, crafted.train,
      batch_size=config.train.batch_size)
  metrics["surrogate"] = probe(surrogate.variables)
  metrics["curve"] = alignment_transfer.alignment_curve(
      victims, crafted.poisoned, crafted.train, crafted.test,
      stream=craft_experiment.victim_stream(victims),
      folder=craft_experiment.victim_dir(crafted.folder, "alignment_curve",
                                         victims))
  return {"dataset": config.dataset, "model": config.model,
          "metrics": metrics}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  launch.run("alignment_transfer", run_transfer,
             check=launchers.alignment_transfer)


if __name__ == "__main__":
  launch.define_flags("configs/craft_poison.py:availability,digits,runlocal")
  app.run(main)
