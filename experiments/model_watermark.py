r"""Adi et al. model watermark: Mark, Verify, removal attacks, piracy, transfer.

  python -m experiments.model_watermark \
      --config=configs/model_watermark.py:adi_fromscratch,fashion_mnist \
      --workdir=/tmp/adi --output_json=/tmp/adi_fromscratch.json

The job is :func:`jaxwm.recipes.model_watermark.run_experiment`; its
docstring lists the models trained and the metrics reported. Runs of both
modes with the same ``--workdir`` share the non-marked model.
"""

from absl import app

from jaxwm import launch
from jaxwm.config_checks import launchers
from jaxwm.recipes import model_watermark


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  launch.run("model_watermark", model_watermark.run_experiment,
             check=launchers.model_watermark)


if __name__ == "__main__":
  launch.define_flags(
      "configs/model_watermark.py:adi_fromscratch,digits,runlocal")
  app.run(main)
