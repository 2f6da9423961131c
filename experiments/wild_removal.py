r"""WILD against the content, noise and unrelated watermarks, beside plain
fine-tuning on the same data and epochs (a measurement script; the removal
matrix launcher supersedes it).

  nice -n 5 python -m experiments.wild_removal --dataset=fashion_mnist \
      --workdir=/tmp/wild --output_json=/tmp/wild.json

For each watermark: a CNN is trained with it (checkpointed in
``workdir/WATERMARK``, so a rerun reuses it), then repaired with 10% of the
training data (stratified, seeded) by WILD (each ``--wild`` variant, as
``name:field=value;field=value`` overrides of
:class:`jaxwm.defenses.wild.WildConfig`) and by all-layer fine-tuning at
WILD's learning rate and epochs. The JSON has, per watermark and model,
the benign test accuracy, the watermark accuracy on the trigger set and,
for content and noise, on the pattern stamped onto the test images outside
the target class.
"""

from __future__ import annotations

import ast
import json
import os

from absl import app
from absl import flags
from absl import logging

from configs import train as train_configs
from jaxwm import data as jaxwm_data
from jaxwm.defenses import fine_tuning
from jaxwm.defenses import repairs
from jaxwm.train import recipe
from jaxwm.watermark import trigger_watermarks as tw

_DATASET = flags.DEFINE_string("dataset", "fashion_mnist", "Dataset name.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoint folder.",
                               required=True)
_OUTPUT = flags.DEFINE_string("output_json", None, "Results file.",
                              required=True)
_WATERMARKS = flags.DEFINE_list("watermarks", ["content", "noise"],
                                "Watermarks: content, noise, unrelated.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of data, keys and training.")
_EMBED_EPOCHS = flags.DEFINE_integer("embed_epochs", 6,
                                     "Epochs of the watermarked model.")
_WIDTH = flags.DEFINE_integer("width", 32, "CNN width.")
_FRACTION = flags.DEFINE_float("fraction", 0.1,
                               "Share of the training data for repairs.")
_WILD = flags.DEFINE_list("wild", ["default:"],
                          "WILD variants, name:field=value;field=value.")


def _variant(spec: str) -> tuple[str, dict]:
  name, _, fields = spec.partition(":")
  overrides = {}
  for item in filter(None, fields.split(";")):
    field, _, value = item.partition("=")
    try:
      overrides[field] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      overrides[field] = value
  return name, overrides


def _key(kind: str, train: jaxwm_data.Dataset, seed: int):
  if kind == tw.CONTENT:
    return tw.content_watermark(train, 0, seed=seed)
  if kind == tw.NOISE:
    return tw.noise_watermark(train, 0, seed=seed)
  return tw.unrelated_watermark(tw.digits_like(train.image_shape), 0,
                                train.num_classes, seed=seed)


def _scores(model, key, test) -> dict:
  scores = {"benign_accuracy": model.evaluate(test)["accuracy"],
            "watermark_accuracy": tw.watermark_accuracy(model, key)}
  if key.kind != tw.UNRELATED:
    others = test.images[test.labels != key.target]
    scores["watermark_accuracy_test_images"] = tw.watermark_accuracy(
        model, key, others)
  logging.info("%s", scores)
  return scores


def main(argv):
  del argv
  config = train_configs.base_config(f"{_DATASET.value},cnn")
  config.seed = _SEED.value
  config.model_kwargs.width = _WIDTH.value
  config.train.num_epochs = _EMBED_EPOCHS.value
  train, test = recipe.load_datasets(config)
  clean = jaxwm_data.stratified_subset(train, _FRACTION.value, _SEED.value)
  results = {"dataset": _DATASET.value, "seed": _SEED.value,
             "embed_epochs": _EMBED_EPOCHS.value, "width": _WIDTH.value,
             "clean_examples": len(clean), "watermarks": {}}
  for kind in _WATERMARKS.value:
    key = _key(kind, train, _SEED.value)
    marked = tw.embed(config, train, key,
                      workdir=os.path.join(_WORKDIR.value, kind))
    row = results["watermarks"][kind] = {"marked": _scores(marked, key, test)}
    for spec in _WILD.value:
      name, overrides = _variant(spec)
      settings = repairs.make_settings("wild", overrides)
      row[f"wild_{name}"] = {
          "settings": repr(settings),
          **_scores(repairs.run_repair("wild", config, marked, clean,
                                       settings), key, test)}
      tuning = fine_tuning.FineTuneConfig(fine_tuning.ALL,
                                          settings.learning_rate,
                                          settings.num_epochs)
      tuned = (f"fine_tuning_lr{tuning.learning_rate:g}_"
               f"epochs{tuning.num_epochs}")
      if tuned not in row:
        row[tuned] = _scores(fine_tuning.repair(config, marked, clean,
                                                tuning), key, test)
      with open(_OUTPUT.value, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
  app.run(main)
