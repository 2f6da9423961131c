"""Model ownership under model stealing: MOVE (Sections 6.1-6.2 of its
paper) and the BadNets model-watermarking baseline of its Tables III-VI.

:func:`run_experiment` is the whole ``experiments/model_stealing.py`` job,
importable from a notebook.

The training set is split (stratified, seeded) into disjoint halves: the
owner's (``1 - split.attacker_fraction``) and the thief's. The owner
watermarks its half and trains the victim on it, and a benign model on
the untouched half; the thief runs each attack of ``attacks``
(:func:`jaxwm.steal.steal`) on the victim with its own half; an
independent model (another seed and architecture, ``independent``) is
trained on the thief's half with its true labels. Every stolen model and
the independent one is then verified by the method's own test
(:mod:`jaxwm.recipes.stealing_methods`).

Every model is checkpointed under ``--workdir`` in a folder named after
its role and a SHA-256 fingerprint of everything it depends on
(:func:`jaxwm.recipes.common.model_dir`); the engine checks each
checkpoint's identity record before restoring it, so a rerun resumes and
a changed value trains anew (:mod:`jaxwm.identity`).

Metrics: ``split`` (``owner_images``, ``attacker_images``,
``test_images``), ``victim_accuracy``, ``benign_accuracy`` and
``accuracy_drop`` (benign minus victim: the watermark's harm), the
method's own ``method`` record (e.g. MOVE's meta-classifier accuracy on
held-out images and its ``controls``: the verdicts on an unseen
victim-like and an unseen benign model), ``alpha``; ``attacks``, per
attack: ``test_accuracy``, ``agreement`` (share of test images on which
it predicts the victim's class), ``queries`` (images the victim
answered) and the verdict; ``independent``: the same for the independent
model (``queries`` 0). A verdict is ``statistic``, ``p_value``,
``log10_p_value``, ``delta_p``, ``m``, ``alpha``, ``decision``
(``reject_h0``: judged stolen, or ``fail_to_reject_h0``) and whatever
else the method's test reports; MOVE's also carries the t-test's own
``test_decision``, and its ``decision`` is ``inconclusive`` where the
verifier's controls disown the test's
(:func:`jaxwm.recipes.stealing_methods.controlled_decision`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from absl import logging

from jaxwm import data as jaxwm_data
from jaxwm import steal as steal_lib
from jaxwm.recipes import (stealing_baselines, stealing_dataset_inference,
                           stealing_methods)
from jaxwm.steal import attacks as attacks_lib
from jaxwm.train import recipe

# Key streams of the thief's models (the owner's are the method's).
STREAMS = {"independent": 50,
           **{name: 60 + i for i, name in enumerate(attacks_lib.ATTACKS)}}


# The config's method -> its owner (:mod:`jaxwm.recipes.stealing_methods`
# describes the interface).
OWNERS = {"move_whitebox": stealing_methods.MoveOwner,
          "move_blackbox": stealing_methods.MoveOwner,
          "badnets": stealing_methods.BadNetsOwner,
          "entangled": stealing_baselines.EntangledOwner,
          "gradient_matching": stealing_baselines.GradientMatchingOwner,
          **dict.fromkeys(("dataset_inference_whitebox",
                           "dataset_inference_blackbox"),
                          stealing_dataset_inference.DatasetInferenceOwner)}


def independent_config(config):
  """The independent model's training config: the victim's recipe with
  ``independent``'s architecture and seed ``config.seed +
  independent.seed_offset``."""
  block = config.independent
  derived = steal_lib.StudentRecipe(
      model=block.model, model_kwargs=block.model_kwargs.to_dict()).config(
          config)
  derived.seed = config.seed + block.seed_offset
  return derived


def agreement(model: recipe.TrainedModel, victim: recipe.TrainedModel,
              test: jaxwm_data.Dataset) -> float:
  """Share of ``test``'s images on which ``model`` predicts the victim's
  class."""
  return float(np.mean(model.predict(test.images) ==
                       victim.predict(test.images)))


def _suspect_entry(run: stealing_methods.Run, owner, suspect, config,
                   queries: int) -> dict[str, Any]:
  return {"test_accuracy": suspect.evaluate(run.test)["accuracy"],
          "agreement": agreement(suspect, owner.victim, run.test),
          "queries": int(queries),
          **owner.verdict(suspect, config)}


def _attacks(run: stealing_methods.Run, owner, outcome: dict[str, Any]
             ) -> None:
  """Each attack of ``config.attacks`` on the victim, verified; each
  entry goes into ``outcome`` as it is measured."""
  config = run.config
  settings = steal_lib.StealConfig.from_dict(config.steal.to_dict())
  for name in config.attacks:
    logging.info("attack: %s", name)
    block = (dataclasses.asdict(getattr(settings, name))
             if name != attacks_lib.DIRECT_COPY else {})
    stolen = steal_lib.steal(
        name, owner.victim, run.attacker, config, settings,
        workdir=run.model_dir(f"stolen_{name}", config, owner.victim_parts,
                              block),
        stream=STREAMS[name])
    outcome[name] = _suspect_entry(
        run, owner, stolen.model,
        attacks_lib.student_config(name, config, settings), stolen.queries)


def _independent(run: stealing_methods.Run, owner) -> dict[str, Any]:
  """The independent model on the thief's half, with its true labels."""
  config = independent_config(run.config)
  model = recipe.train_model(
      config, run.attacker,
      workdir=run.model_dir("independent", config, "attacker_half"),
      stream=STREAMS["independent"])
  return _suspect_entry(run, owner, model, config, 0)


def run_experiment(config, workdir: str,
                   metrics: dict[str, Any] | None = None) -> dict[str, Any]:
  """The whole experiment; returns the launcher's ``outcome`` mapping.

  Args:
    config: a config from ``configs/model_stealing.py``.
    workdir: where models, caches and meta-classifiers go (a rerun
      resumes).
    metrics: the dict to fill, stage by stage, as values are measured (the
      launcher's, so that a failure still reports them); default a new one.
      The metrics are those of the module docstring.
  """
  metrics = {} if metrics is None else metrics
  owner_data, attacker, test = recipe.load_owner_and_attacker(
      config, config.split.attacker_fraction)
  metrics["split"] = {"owner_images": len(owner_data),
                      "attacker_images": len(attacker),
                      "test_images": len(test)}
  run = stealing_methods.Run(config, workdir, owner_data, attacker, test)
  owner = OWNERS[config.method](run)
  victim_accuracy = owner.victim.evaluate(test)["accuracy"]
  benign_accuracy = owner.benign.evaluate(test)["accuracy"]
  metrics.update(victim_accuracy=victim_accuracy,
                 benign_accuracy=benign_accuracy,
                 accuracy_drop=benign_accuracy - victim_accuracy,
                 alpha=owner.alpha, method=owner.summary(), attacks={})
  _attacks(run, owner, metrics["attacks"])
  metrics["independent"] = _independent(run, owner)
  return {"dataset": config.dataset, "model": config.model,
          "metrics": metrics}
