r"""Dataset watermarks and black-box ownership verification (UBW paper).

  python -m experiments.dataset_watermark \
      --config=configs/dataset_watermark.py:ubw_p,fashion_mnist \
      --workdir=/tmp/dataset_watermark --output_json=/tmp/ubw_p.json

The variant is METHOD,DATASET[,MODEL][,runlocal][,demo], METHOD one of
badnets, blended, wanet, label_consistent, ubw_p (``demo``: the README's
few-minute UBW-P run). Trains the benign model, the watermarked model and
(unless ``--config.verify.independent_trigger_model=False``) a model
watermarked with a different trigger; reports the watermarked model's
benign accuracy, ASR-A, ASR-C and D_p and the p-value and Delta P of the
paper's three verification scenarios (independent_t, independent_m,
malicious) and of independent_trigger_model, on the source classes of the
paper's evaluation and on every class, and prints them as the paper's
Table 1 row and Table 3 (see :mod:`jaxwm.recipes.dataset_watermark`). Runs
of different methods with the same ``--workdir`` share the benign model.
"""

from absl import app

from jaxwm import launch
from jaxwm.config_checks import launchers
from jaxwm.recipes import dataset_watermark


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  outcome = launch.run("dataset_watermark", dataset_watermark.run_experiment,
                       check=launchers.dataset_watermark)
  print(dataset_watermark.format_table(outcome["metrics"]))


if __name__ == "__main__":
  launch.define_flags("configs/dataset_watermark.py:ubw_p,digits,runlocal")
  app.run(main)
