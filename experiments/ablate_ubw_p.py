r"""UBW-P dispersibility D_p against training epochs, model and label draw.

  python -m experiments.ablate_ubw_p \
      --config=configs/dataset_watermark.py:ubw_p,fashion_mnist \
      --workdir=/tmp/ablate_ubw_p --output_json=/tmp/ablate_ubw_p.json \
      --plot=docs/ubw_p_dp_vs_epochs.png

For each arm of ``config.ablation`` (a CNN width and a way of drawing the
random labels) trains the UBW-P experiment's watermarked model and
measures D_p, ASR-A, benign accuracy and the share of poisoned training
samples fitted after each epoch count; the job is
:func:`jaxwm.recipes.ablate_ubw_p.run_ablation`.
Writes the curves to the results JSON and, with ``--plot``, a PNG.
"""

from __future__ import annotations

import os
from typing import Any

from absl import app
from absl import flags

from jaxwm import launch
from jaxwm.config_checks import Problem, launchers, paths
from jaxwm.recipes import ablate_ubw_p

_PLOT = flags.DEFINE_string("plot", None, "Write the curves as a PNG here.")


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
  outcome = launch.run("ablate_ubw_p", ablate_ubw_p.run_ablation,
                       check=check_ablation)
  if _PLOT.value:
    config = flags.FLAGS.config
    plot_curves(outcome["metrics"]["curves"], _PLOT.value,
                f"UBW-P on {config.dataset} ({config.train_fraction:.0%} of "
                f"the training set), lr {config.train.learning_rate} / 10 "
                f"after epochs {tuple(config.train.milestones)}")


if __name__ == "__main__":
  launch.define_flags("configs/dataset_watermark.py:ubw_p,digits,runlocal")
  app.run(main)
