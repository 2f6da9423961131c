r"""How often a verifier accepts a model that was never marked.

  python -m experiments.false_acceptance \
      --config=configs/model_watermark.py:false_acceptance,fashion_mnist \
      --workdir=/tmp/fa --output_json=/tmp/false_acceptance.json

The job is :func:`jaxwm.recipes.false_acceptance.run_experiment`: it
trains ``false_acceptance.num_models`` non-marked models, verifies each
and reports the acceptance rate with its 95% upper bound. The verifier is
``false_acceptance.verifier``: Adi et al.'s (the config above, a fresh
secret key per model), the dataset watermark's ownership t-test
(``--config=configs/false_acceptance.py:dataset,ubw_p,fashion_mnist``) or
MOVE's (``--config=configs/false_acceptance.py:move_whitebox,fashion_mnist``).
An interrupted run resumes.
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
