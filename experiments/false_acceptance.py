r"""How often Verify accepts a model that was never marked.

  python -m experiments.false_acceptance \
      --config=configs/model_watermark.py:false_acceptance,fashion_mnist \
      --workdir=/tmp/fa --output_json=/tmp/false_acceptance.json

The job is :func:`jaxwm.recipes.false_acceptance.run_experiment`: it
trains ``false_acceptance.num_models`` non-marked models, verifies each
with a fresh secret key and reports the acceptance rate against the
binomial test's exact size. An interrupted run resumes.
"""

from absl import app

from jaxwm import launch
from jaxwm.config_checks import launchers
from jaxwm.recipes import false_acceptance


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  launch.run("false_acceptance", false_acceptance.run_experiment,
             check=launchers.false_acceptance)


if __name__ == "__main__":
  launch.define_flags(
      "configs/model_watermark.py:false_acceptance,digits,runlocal")
  app.run(main)
