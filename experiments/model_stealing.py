r"""Model ownership under the six model-stealing attacks (MOVE and the
baselines).

  python -m experiments.model_stealing \
      --config=configs/model_stealing.py:move_whitebox,fashion_mnist \
      --workdir=/tmp/steal --output_json=/tmp/move_whitebox.json

The job is :func:`jaxwm.recipes.model_stealing.run_experiment`; its
docstring lists the models trained and the metrics reported. Runs of
several methods with the same ``--workdir`` share the models they have in
common (the benign models, and MOVE's models across settings).
"""

from absl import app

from jaxwm import launch
from jaxwm.config_checks import launchers
from jaxwm.recipes import model_stealing


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  launch.run("model_stealing", model_stealing.run_experiment,
             check=launchers.model_stealing)


if __name__ == "__main__":
  launch.define_flags(
      "configs/model_stealing.py:move_whitebox,digits,runlocal")
  app.run(main)
