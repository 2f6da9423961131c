r"""Crafted poisons: availability poisons and clean-label watermarks.

  python -m experiments.craft_poison \
      --config=configs/craft_poison.py:availability,fashion_mnist \
      --workdir=/tmp/poison --output_json=/tmp/availability.json

The job is :func:`jaxwm.recipes.craft_poison.run_experiment`: it trains
the surrogate, crafts the poison (resumable under ``--workdir``), trains a
fresh victim on the poisoned set and one on the clean set, and reports
``test_accuracy`` and ``clean_test_accuracy`` (availability methods) or
the watermark metrics and verification p-values (``ubw_c``,
``sleeper_agent``).
"""

from absl import app

from jaxwm import launch
from jaxwm.config_checks import launchers
from jaxwm.recipes import craft_poison


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  launch.run("craft_poison", craft_poison.run_experiment,
             check=launchers.craft_poison)


if __name__ == "__main__":
  launch.define_flags("configs/craft_poison.py:availability,digits,runlocal")
  app.run(main)
