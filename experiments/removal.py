r"""Watermark removal and backdoor detection: one row of the watermark x
defense matrix.

  python -m experiments.removal \
      --config=configs/removal.py:content,fashion_mnist \
      --workdir=/tmp/removal --output_json=/tmp/removal_content.json

The job is :func:`jaxwm.recipes.removal.run_experiment`; its docstring
lists the models trained, the metrics reported and the figures drawn. Runs
of every row with the same ``--workdir`` fill one matrix (its heatmap and
curves are redrawn after each row).
"""

from absl import app

from jaxwm import launch
from jaxwm.config_checks import launchers
from jaxwm.recipes import removal


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  launch.run("removal", removal.run_experiment, check=launchers.removal)


if __name__ == "__main__":
  launch.define_flags("configs/removal.py:content,digits,runlocal")
  app.run(main)
