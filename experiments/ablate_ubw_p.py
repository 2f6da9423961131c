r"""UBW-P dispersibility D_p against training epochs, model and label draw.

  python -m experiments.ablate_ubw_p \
      --config=configs/dataset_watermark.py:ubw_p,fashion_mnist \
      --workdir=/tmp/ablate_ubw_p --output_json=/tmp/ablate_ubw_p.json \
      --plot=docs/ubw_p_dp_vs_epochs.png

For each arm of ``config.ablation`` (a CNN width and a way of drawing the
random labels) trains the UBW-P experiment's watermarked model and
measures D_p, ASR-A, benign accuracy and the share of poisoned training
samples fitted after each epoch count (see :mod:`jaxwm.poison.ablation`).
Writes the curves to the results JSON and, with ``--plot``, a PNG.
"""

from __future__ import annotations

import copy
import os
from typing import Any

from absl import app
from absl import flags
from absl import logging

from jaxwm import launch
from jaxwm.config_checks import Problem, launchers, paths
from jaxwm.poison import ablation
from jaxwm.poison import experiment
from jaxwm.train import recipe

_PLOT = flags.DEFINE_string("plot", None, "Write the curves as a PNG here.")


def arm_config(config, arm: dict[str, Any]):
  """The experiment's config with the arm's CNN width and label draw."""
  result = copy.deepcopy(config)
  result.unlock()
  result.model_kwargs.width = arm["width"]
  result.watermark.label_draw = arm["label_draw"]
  return result


def run_ablation(config, workdir: str,
                 metrics: dict[str, Any] | None = None) -> dict[str, Any]:
  """Every arm's curve, into ``metrics["curves"]`` arm by arm (``metrics``
  default a new dict); the launcher's ``outcome`` mapping.

  An arm's model is the experiment's watermarked model for its config and
  lives in the same folder, so ``experiments/dataset_watermark.py`` with
  the same ``--workdir`` reuses it (and the other way round).
  """
  arms = config.ablation.arms.to_dict()
  only = [name for name in config.ablation.only.split(",") if name]
  unknown = sorted(set(only) - set(arms))
  if unknown:
    raise ValueError(f"ablation.only names unknown arms {unknown}; the arms "
                     f"are {sorted(arms)}.")
  metrics = {} if metrics is None else metrics
  curves = metrics.setdefault("curves", {})
  for name, arm in arms.items():
    if only and name not in only:
      continue
    arm_settings = arm_config(config, arm)
    train, test = recipe.load_datasets(arm_settings)
    watermark = arm_settings.watermark.to_dict()
    marked, key = experiment.mark_dataset(
        train, watermark, experiment.watermark_rng(config, "watermarked"))
    logging.info("arm %s: %d training images, %d poisoned", name, len(train),
                 key.poisoned_indices.size)
    curves[name] = ablation.dispersibility_curve(
        arm_settings, marked, key, test, config.ablation.epochs,
        experiment.marked_model_dir(workdir, arm_settings, watermark,
                                    "watermarked"))
  return {"dataset": config.dataset, "model": config.model,
          "metrics": metrics}


def plot_curves(curves: dict[str, list[dict[str, Any]]], path: str,
                title: str) -> None:
  """D_p, poison fit and ASR-A against epochs, one line per arm."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  panels = (("d_p", "D_p (triggered test set)"),
            ("poison_fit", "poisoned training samples fitted"),
            ("asr_a", "ASR-A"))
  figure, axes = pyplot.subplots(1, len(panels), figsize=(13, 3.8))
  for axis, (metric, label) in zip(axes, panels):
    for name, points in curves.items():
      axis.plot([p["epochs"] for p in points], [p[metric] for p in points],
                marker="o", label=name)
    axis.set_xlabel("epochs")
    axis.set_ylabel(label)
    axis.grid(alpha=0.3)
  axes[0].axhline(1.8, color="grey", linestyle="--", linewidth=1)
  axes[0].legend(fontsize=8)
  figure.suptitle(title, fontsize=10)
  figure.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path, dpi=120)
  pyplot.close(figure)


def check_ablation(config) -> list[Problem]:
  """The ablation's config and the ``--plot`` file."""
  return (launchers.ablate_ubw_p(config) +
          paths.output_file(_PLOT.value, "--plot"))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  outcome = launch.run("ablate_ubw_p", run_ablation, check=check_ablation)
  if _PLOT.value:
    config = flags.FLAGS.config
    plot_curves(outcome["metrics"]["curves"], _PLOT.value,
                f"UBW-P on {config.dataset} ({config.train_fraction:.0%} of "
                f"the training set), lr {config.train.learning_rate} / 10 "
                f"after epochs {tuple(config.train.milestones)}")


if __name__ == "__main__":
  launch.define_flags("configs/dataset_watermark.py:ubw_p,digits,runlocal")
  app.run(main)
