"""The dataset watermark experiment (UBW paper, Sections 5.2-5.3).

:func:`run_experiment` is the whole ``experiments/dataset_watermark.py`` job,
importable from a notebook:

1. train the benign model on the clean training set (also the surrogate of
   the Label-Consistent PGD);
2. mark the training set with the owner's watermark and train the
   watermarked model on it;
3. measure the watermarked model: benign accuracy (whole test set), ASR-A,
   ASR-C, D_p, D_s and D_c on the triggered test images of the source
   classes ``config.verify.source_classes`` (the UBW paper's evaluation,
   Appendix C.2: class 0), and again on those of every class the
   watermark acts on (``all_classes``);
4. when ``config.verify.independent_trigger_model``, mark the training set
   with a different trigger (``config.independent_trigger``) and train a
   model on it;
5. verify the scenarios of :mod:`jaxwm.recipes.scenarios` with the owner's
   key, sampling the test images from the source classes, then from every
   class: Independent-T (the paper's: the watermarked model queried with
   the different trigger), Independent-M, Malicious and, beside them, the
   independent-trigger model queried with the owner's trigger.

Every model is checkpointed under ``workdir`` in a folder named after its
role, dataset, model and seed plus a SHA-256 fingerprint of everything it
depends on (e.g. ``benign_fashion_mnist_cnn_seed0-1a2b...``), so a rerun, or
another watermark run with the same ``workdir``, resumes or reuses it, after
the engine has checked the checkpoint's identity record (the config fields
and the SHA-256 of the training data, :mod:`jaxwm.identity`). The
owner's key is saved beside the watermarked model's checkpoints
(``watermark_key.npz/.json/.manifest.json``) and its manifest digest is
reported.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from absl import logging

from jaxwm import monitor
from jaxwm.data.dataset import Dataset
from jaxwm.poison import methods
from jaxwm.poison.ownership import evaluated_classes
from jaxwm.poison.watermark_key import WatermarkKey
from jaxwm.recipes import scenarios
from jaxwm.recipes.common import (model_dir, picture_samples,
                                  watermark_metrics)
from jaxwm.train import recipe

# The engine's key streams of the three models, and the watermark keys'.
STREAMS = {"benign": 0, "watermarked": 1, "independent": 2}
WATERMARK_STREAMS = {"watermarked": 1000, "independent": 1001}
KEY_FILE = "watermark_key"


def watermark_rng(config, role: str) -> jax.Array:
  """The jax.random key of the ``role`` watermark, from ``config.seed``."""
  return jax.random.fold_in(jax.random.key(config.seed),
                            WATERMARK_STREAMS[role])


def marked_model_dir(workdir: str, config, watermark: Mapping[str, Any],
                     role: str) -> str:
  """The folder of the model trained on the ``role`` watermark's dataset."""
  key_data = np.asarray(jax.random.key_data(watermark_rng(config, role)))
  return model_dir(workdir, f"{watermark['method']}_{role}", config,
                   dict(watermark), key_data)


def _train_marked(config, train: Dataset, watermark: Mapping[str, Any],
                  role: str, workdir: str, surrogate: recipe.TrainedModel
                  ) -> tuple[recipe.TrainedModel, WatermarkKey, str]:
  """Marks ``train``, saves the key and trains a model on the marked set.

  Returns:
    (the trained model, the WatermarkKey, the key's manifest digest).
  """
  marked, watermark_key = methods.mark_dataset(
      train, watermark, watermark_rng(config, role), surrogate)
  folder = marked_model_dir(workdir, config, watermark, role)
  os.makedirs(folder, exist_ok=True)
  digest = watermark_key.save(os.path.join(folder, KEY_FILE))
  logging.info("%s: %d of %d training images marked; key saved in %s "
               "(manifest SHA-256 %s)", role,
               watermark_key.poisoned_indices.size, len(train), folder,
               digest)
  picture_samples(f"marked_samples_{role}", marked,
                  watermark_key.poisoned_indices,
                  f"{watermark['method']}: marked training images")
  model = recipe.train_model(config, marked, workdir=folder,
                             stream=STREAMS[role])
  return model, watermark_key, digest


def _measure(suspects: Mapping[str, Any], key: WatermarkKey,
             other_key: WatermarkKey, test: Dataset, verify,
             source_classes: Sequence[int] | None) -> dict[str, Any]:
  """The scenarios' verdicts on the test images of ``source_classes``
  (None: every class the watermark acts on)."""
  verdicts = scenarios.verify_scenarios(
      suspects, key, test, m=verify.m, tau=verify.tau, seed=verify.seed,
      keys={"independent_t": other_key}, source_classes=source_classes)
  return scenarios.scenario_metrics(verdicts, verify.alpha)


def _rates(watermarked: recipe.TrainedModel, key: WatermarkKey, test: Dataset,
           source_classes: Sequence[int] | None) -> dict[str, Any]:
  """The watermarked model's ASR-A, ASR-C and dispersibility on the test
  images of ``source_classes`` (None: every class the watermark acts on),
  with the classes measured."""
  return {"source_classes": list(evaluated_classes(key, source_classes)),
          **watermark_metrics(watermarked.predict_proba, key, test,
                              source_classes)}


def _picture_triggered(key: WatermarkKey, test: Dataset,
                       count: int = 8) -> None:
  """Draws ``count`` test images beside the same images with the owner's
  trigger (``triggered_test_images.png``)."""
  images = test.images[:count]
  monitor.add_image_grid(
      "triggered_test_images",
      np.concatenate([images, key.apply_trigger_uint8(images)]),
      ["clean"] * len(images) + ["triggered"] * len(images),
      "test images without and with the owner's trigger")


def run_experiment(config, workdir: str,
                   metrics: dict[str, Any] | None = None) -> dict[str, Any]:
  """The whole experiment; returns the launcher's ``outcome`` mapping.

  Args:
    config: a config from ``configs/dataset_watermark.py``.
    workdir: where models and keys go (reused across runs and methods).
    metrics: the dict to fill, stage by stage, as values are measured (the
      launcher's, so that a failure still reports them); default a new one.

  Returns:
    {"dataset", "model", "metrics"}. The metrics follow the UBW paper's
    evaluation, on the test images of ``config.verify.source_classes``
    (Appendix C.2): the watermarked model's ``benign_accuracy`` (whole
    test set), ``asr_a``, ``asr_c``, ``d_p``, ``d_s``, ``d_c``,
    ``top_class_share`` and ``source_classes`` (the classes measured);
    ``verification`` (each scenario's test result, or the reason it could
    not be run), ``p_value`` and ``delta_p`` keyed by scenario. The same,
    over every class the watermark acts on, under ``all_classes``.
    Besides: ``benign_accuracy_no_watermark`` of the benign model,
    ``poison_rate`` and ``watermark_key_digest``.
  """
  metrics = {} if metrics is None else metrics
  train, test = recipe.load_datasets(config)
  logging.info("%s on %d %s training images, %d test images",
               config.watermark.method, len(train), config.dataset, len(test))
  monitor.expect_models(3 if config.verify.independent_trigger_model
                        else 2)
  benign = recipe.train_model(config, train,
                              workdir=model_dir(workdir, "benign", config),
                              stream=STREAMS["benign"])
  metrics["benign_accuracy_no_watermark"] = benign.evaluate(test)["accuracy"]
  watermark = config.watermark.to_dict()
  watermarked, key, digest = _train_marked(config, train, watermark,
                                           "watermarked", workdir, benign)
  metrics.update(poison_rate=key.poison_rate, watermark_key_digest=digest)
  source_classes = tuple(config.verify.source_classes)
  _picture_triggered(key, test)
  metrics.update(_rates(watermarked, key, test, source_classes))
  all_classes = _rates(watermarked, key, test, None)
  del all_classes["benign_accuracy"]  # measured on the whole test set
  metrics["all_classes"] = all_classes
  independent_watermark = {**watermark,
                           **config.independent_trigger.to_dict()}
  other_key = dataclasses.replace(key, trigger=methods.watermark_trigger(
      independent_watermark, train.image_shape,
      watermark_rng(config, "independent")))
  suspects = {"independent_t": watermarked.predict_proba,
              "independent_m": benign.predict_proba,
              "malicious": watermarked.predict_proba}
  if config.verify.independent_trigger_model:
    independent, _, _ = _train_marked(config, train, independent_watermark,
                                      "independent", workdir, benign)
    suspects["independent_trigger_model"] = independent.predict_proba
  metrics.update(_measure(suspects, key, other_key, test, config.verify,
                          source_classes))
  all_classes.update(_measure(suspects, key, other_key, test, config.verify,
                              None))
  return {"dataset": config.dataset, "model": config.model,
          "metrics": metrics}


def _cell(value: Any, spec: str) -> str:
  return format(value, spec) if isinstance(value, float) else "n/a"


def _block(title: str, values: Mapping[str, Any]) -> list[str]:
  """The rates and the scenarios' Delta P and p-values of one evaluation."""
  names = [name for name in scenarios.SCENARIOS + scenarios.EXTRA_SCENARIOS
           if name in values.get("verification", scenarios.SCENARIOS)]

  def row(name: str, cells: list[str]) -> str:
    return f"{name:<8} " + " ".join(
        f"{cell:>{max(14, len(n))}}" for n, cell in zip(names, cells))

  def scenario_row(name: str, entries: Mapping[str, float], spec: str) -> str:
    return row(name, [_cell(entries.get(n), spec) for n in names])

  return [
      f"{title}: classes {values.get('source_classes', 'n/a')}",
      "ASR-A   ASR-C   D_p",
      " ".join(f"{_cell(values[name], '.4f'):<7}"
               for name in ("asr_a", "asr_c", "d_p")),
      row("", names),
      scenario_row("Delta P", values.get("delta_p", {}), ".4f"),
      scenario_row("p-value", values.get("p_value", {}), ".3g"),
  ]


def format_table(metrics: Mapping[str, Any]) -> str:
  """The paper's Table 1 row and Table 3 block for one run, as text: the
  paper's evaluation (its source classes), then every class.

  A value or scenario that could not be measured shows ``n/a``.

  Args:
    metrics: the ``metrics`` of :func:`run_experiment`.
  """
  lines = [
      f"BA {_cell(metrics['benign_accuracy'], '.4f')} "
      f"(no watermark: "
      f"{_cell(metrics['benign_accuracy_no_watermark'], '.4f')})", ""]
  lines += _block("The UBW paper's evaluation", metrics)
  if "all_classes" in metrics:
    lines += [""] + _block("Every class the watermark acts on",
                           metrics["all_classes"])
  return "\n".join(lines)
