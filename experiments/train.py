r"""Trains and evaluates a classifier.

  python -m experiments.train --config=configs/train.py:fashion_mnist,cnn \
      --workdir=/tmp/fmnist --output_json=/tmp/fmnist.json
"""

from absl import app

from jaxwm import launch
from jaxwm.config_checks import launchers
from jaxwm.recipes import train


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  launch.run("train", train.train_and_evaluate, check=launchers.train)


if __name__ == "__main__":
  launch.define_flags("configs/train.py:digits,runlocal")
  app.run(main)
