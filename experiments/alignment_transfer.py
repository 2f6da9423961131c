r"""Does an availability poison stay aligned along a victim's training?

  python -m experiments.alignment_transfer \
      --config=configs/craft_poison.py:availability,fashion_mnist,cnn \
      --workdir=/tmp/poison --output_json=/tmp/alignment_transfer.json

The job is :func:`jaxwm.recipes.alignment_transfer.run_transfer`: it
reuses (or makes) the surrogate and the poison of
``experiments/craft_poison.py`` with the same ``--config`` and
``--workdir``, then trains its poisoned victim again while measuring, after
every epoch, the poison's alignment at the victim's parameters
(:mod:`jaxwm.alignment.transfer`); the same alignment at the
surrogate's parameters, where the poison was crafted, is reported beside
it. With ``random_noise`` both are the baseline of a perturbation that was
never aligned (the surrogate is then trained for the probe alone, in the
folder the other methods share).
"""

from absl import app

from jaxwm import launch
from jaxwm.config_checks import launchers
from jaxwm.recipes import alignment_transfer


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  launch.run("alignment_transfer", alignment_transfer.run_transfer,
             check=launchers.alignment_transfer)


if __name__ == "__main__":
  launch.define_flags("configs/craft_poison.py:availability,digits,runlocal")
  app.run(main)
