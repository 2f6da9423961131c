"""The owner's side of each method of ``experiments/model_stealing.py``:
its watermark, victim, benign model and verification.

An owner (a class of :data:`jaxwm.recipes.model_stealing.OWNERS`)
exposes ``victim`` and ``benign`` (trained models), ``victim_parts``
(what the victim's folder depends on besides the training config, which
every stolen model's folder adds), ``alpha``,
``summary()`` (the method's own metrics) and ``verdict(suspect,
suspect_config)``: the method's test of a suspect, whose training config
(``configs/train.py`` fields) names its architecture.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import numpy as np

from jaxwm import data as jaxwm_data
from jaxwm import monitor
from jaxwm.fingerprint import fingerprint
from jaxwm.poison import methods as poison_methods
from jaxwm.poison.ownership import verify_dataset_ownership
from jaxwm import results as results_lib
from jaxwm.recipes import common
from jaxwm.train import recipe
from jaxwm.verify import TooFewCorrectError
from jaxwm.verify.levels import INCONCLUSIVE, REJECT, RETAIN, decision
from jaxwm.verify.ttest import PairedTTestResult
from jaxwm.watermark import move

# Key streams of the owner's models: the i-th victim-like and benign model.
VICTIM_STREAM = 1
BENIGN_STREAM = 20
# The stream of the BadNets watermark's draws (which images, folded into
# jax.random.key(config.seed)).
BADNETS_STREAM = 0
# The blocks of ``config.move`` that set the meta-classifiers.
META_CLASSIFIER_BLOCKS = ("white_box", "black_box")
# The fields of ``config.move`` that set the tests alone (no model and no
# meta-classifier depends on them).
TEST_FIELDS = ("m_white_box", "m_black_box", "alpha")
# The fields of ``config.move`` that set the meta-classifiers' data and
# features (which stylised images train them, how the features are
# computed), not the owner's models. Every field not named here or above
# keys the owner's models too, so a new field errs on the side of training
# again rather than of restoring a model it changed.
FEATURE_FIELDS = ("verification_fraction", "white_box_features",
                  "pool_threshold", "gradient_batch_size", "shift")


@dataclasses.dataclass(frozen=True)
class Run:
  """One experiment's config, workdir and data.

  Attributes:
    config: a config of ``configs/model_stealing.py``.
    workdir: where models and caches go.
    owner: the owner's half of the training set.
    attacker: the thief's half, disjoint from ``owner``.
    test: the test set.
  """

  config: Any
  workdir: str
  owner: jaxwm_data.Dataset
  attacker: jaxwm_data.Dataset
  test: jaxwm_data.Dataset

  def model_dir(self, role: str, config, *parts: Any) -> str:
    """The folder of a model of training config ``config`` (the run's or
    a student's), named after everything it depends on: its config, the
    split and ``parts``."""
    return common.model_dir(self.workdir, role, config,
                            self.config.split.attacker_fraction, *parts)


def verdict_record(test: PairedTTestResult, alpha: float, stolen: bool,
                   **extra: Any) -> dict[str, Any]:
  """The JSON record of a one-sided paired t-test's verdict."""
  return {"statistic": test.statistic, "dof": test.dof,
          "p_value": test.p_value, "log10_p_value": test.log10_p_value,
          "p_value_definition": test.p_value_definition,
          "delta_p": test.delta_p, "m": test.m, "alpha": float(alpha),
          "decision": decision(stolen), **extra}


def dataset_watermark_verdict(run: Run, key, suspect: recipe.TrainedModel
                              ) -> dict[str, Any]:
  """The dataset watermark's verdict on ``suspect`` (black-box): the
  one-sided paired t-test of ``key``'s target class's probability on
  triggered test images (block ``verify``; ``verify.source_classes``
  absent: the key's own), or ``{"error": why}`` for a suspect that
  classifies too few eligible test images correctly to be tested."""
  verify = run.config.verify
  classes = verify.get("source_classes")
  try:
    test = verify_dataset_ownership(
        suspect.predict_proba, key, run.test, m=verify.m, tau=verify.tau,
        seed=verify.seed,
        source_classes=None if classes is None else tuple(classes))
  except TooFewCorrectError as error:
    return results_lib.not_computed(str(error))
  return verdict_record(test, float(verify.alpha),
                        test.rejects(verify.alpha), tau=verify.tau)


def architecture(config, suspect_config):
  """The owner's training config for models of ``suspect_config``'s
  architecture (the owner's seed and recipe)."""
  derived = config.copy_and_resolve_references()
  derived.model = suspect_config.model
  derived.model_kwargs = (
      suspect_config.model_kwargs.copy_and_resolve_references())
  return derived


@dataclasses.dataclass(frozen=True)
class _References:
  """The owner's models of one architecture and their meta-classifier.

  Attributes:
    victims: the victim-like models (the first is the victim).
    benign_references: the benign models that verification compares with
      (never in the meta-classifier's training); the first is the paired
      test's benign model.
    meta: the meta-classifier, trained on ``victims`` against benign
      models of other seeds.
    victim_parts: what ``victims[0]``'s folder depends on.
  """

  victims: list[recipe.TrainedModel]
  benign_references: list[recipe.TrainedModel]
  meta: move.MetaClassifier
  victim_parts: tuple[Any, ...]

  @property
  def benign(self) -> recipe.TrainedModel:
    """The paired test's benign model."""
    return self.benign_references[0]


def _reference_streams(num_models: int, num_references: int) -> range:
  """The streams of the benign references after the first (stream
  BENIGN_STREAM): past the meta-classifier's benign models (the next
  ``num_models``) and the unseen benign control's (one more)."""
  first = BENIGN_STREAM + num_models + 2
  return range(first, first + num_references - 1)


def _picture_stylised(key: move.MoveKey, count: int = 8) -> None:
  """Draws ``count`` of the owner's training images above their style
  transfer, as ``move_stylised.png`` in the run's pictures."""
  count = min(count, len(key.transformed))
  monitor.add_image_grid(
      "move_stylised",
      np.concatenate([key.benign_images[:count],
                      key.transformed.images[:count]]),
      ["original"] * count + ["stylised"] * count,
      "MOVE: training images and their style transfer (external features)")


class MoveOwner:
  """MOVE: external features, a meta-classifier, a paired t-test.

  The meta-classifier learns from ``meta.num_models`` victim-like models
  (the victim, and models of other key streams trained on the same
  watermarked set) against as many benign models of other streams;
  verification compares the suspect with ``meta.num_references`` more
  benign models, which it never saw (:mod:`jaxwm.watermark.move.verification`:
  the paper's paired test against the first, and the test over models
  against all). White-box verification of a suspect of another
  architecture trains these models and a meta-classifier for that
  architecture, as the paper does.
  """

  def __init__(self, run: Run):
    block = run.config.move.to_dict()
    self.setting = block.pop("setting")
    self.run = run
    # What a meta-classifier depends on besides its models and settings.
    features = {name: value for name, value in block.items()
                if name not in META_CLASSIFIER_BLOCKS + TEST_FIELDS}
    self._feature_parts = ("move", features)
    # What the owner's models depend on: the watermark's settings, not the
    # meta-classifiers' or the tests'.
    self.parts = ("move", {name: value for name, value in features.items()
                           if name not in FEATURE_FIELDS})
    self.move = move.MoveConfig.from_dict(
        {**block, "cache_dir": os.path.join(run.workdir, "style_cache")})
    self.alpha = self.move.alpha
    self.marked, self.key = move.watermark(self.move, run.owner)
    move.check_verification_size(self.move, self.key, self.setting)
    _picture_stylised(self.key)
    self._references: dict[str, _References] = {}
    self._controls: dict[str, dict[str, Any]] = {}
    main = self.references(run.config)
    self.victim, self.benign = main.victims[0], main.benign
    self.victim_parts = main.victim_parts

  def _architecture_name(self, config) -> str:
    """The built module of ``config``, so that a default written out
    (width=32) is the architecture that leaves it implicit."""
    return repr(recipe.build_model(config, self.run.owner.num_classes))

  def references(self, suspect_config) -> _References:
    """The owner's models and meta-classifier for ``suspect_config``'s
    architecture (trained on first use)."""
    config = architecture(self.run.config, suspect_config)
    name = self._architecture_name(config)
    if name not in self._references:
      self._references[name] = self._train_references(config)
    return self._references[name]

  def _train_references(self, config) -> _References:
    run, count = self.run, self.run.config.meta.num_models
    victim_dirs = [run.model_dir(f"victim{i or ''}", config, *self.parts)
                   for i in range(count)]
    benign_dirs = [run.model_dir(f"benign{i or ''}", config)
                   for i in range(count + 1)]
    victims = [recipe.train_model(config, self.marked, workdir=folder,
                                  stream=VICTIM_STREAM + i)
               for i, folder in enumerate(victim_dirs)]
    benigns = [recipe.train_model(config, run.owner, workdir=folder,
                                  stream=BENIGN_STREAM + i)
               for i, folder in enumerate(benign_dirs)]
    folders = [os.path.basename(f) for f in victim_dirs + benign_dirs]
    meta = move.train_meta_classifier(
        self.move, self.key, victims, benigns[1:], self.setting,
        workdir=os.path.join(run.workdir, f"meta_{self.setting}-" + fingerprint(
            folders, self._feature_parts,
            dataclasses.asdict(self.move.meta_classifier(self.setting)))))
    # benigns[0] and more benign models past the controls' stream.
    extra = [recipe.train_model(
        config, run.owner, stream=stream,
        workdir=run.model_dir(f"reference{stream}", config))
             for stream in _reference_streams(
                 count, self.run.config.meta.num_references)]
    return _References(victims, [benigns[0], *extra], meta, self.parts)

  def _for_config(self, suspect_config):
    """The training config whose references judge ``suspect_config``'s
    models. White-box: the suspect's architecture; black-box: the
    victim's (the features are the suspect's outputs alone)."""
    return architecture(self.run.config,
                        suspect_config if self.setting == move.WHITE_BOX
                        else self.run.config)

  def _for(self, suspect_config) -> _References:
    """The references that judge ``suspect_config``'s models."""
    return self.references(self._for_config(suspect_config))

  def controls(self, suspect_config=None) -> dict[str, Any]:
    """The verifier's controls for suspects of ``suspect_config``'s
    architecture (default the victim's): the test's verdicts on one more
    victim-like and one more benign model of the architecture whose
    meta-classifier judges them, from streams that no other model uses,
    which that meta-classifier never saw. A verifier that learned the
    external features judges the first stolen and not the second; one that
    memorised its training models may judge both at random, and accuse the
    benign one (:func:`controlled_decision`). Trained on first use."""
    config = self._for_config(suspect_config or self.run.config)
    name = self._architecture_name(config)
    if name not in self._controls:
      count = self.run.config.meta.num_models
      # The streams follow the meta-classifier's models, so the folders
      # are named by stream: another num_models trains other controls.
      victim_stream = VICTIM_STREAM + count
      benign_stream = BENIGN_STREAM + count + 1
      models = {
          "unseen_victim_like": recipe.train_model(
              config, self.marked, stream=victim_stream,
              workdir=self.run.model_dir(f"control_victim{victim_stream}",
                                         config, *self.parts)),
          "unseen_benign": recipe.train_model(
              config, self.run.owner, stream=benign_stream,
              workdir=self.run.model_dir(f"control_benign{benign_stream}",
                                         config))}
      self._controls[name] = {
          role: self.test(model, config) for role, model in models.items()}
    return self._controls[name]

  def summary(self) -> dict[str, Any]:
    main = self.references(self.run.config)
    return {"name": "move", "setting": self.setting,
            "meta_models": self.run.config.meta.num_models,
            "benign_references": self.run.config.meta.num_references,
            "transformed_images": len(self.key.transformed),
            "meta_classifier_held_out_accuracy": move.held_out_accuracy(
                self.move, self.key, main.meta, self.victim, main.benign,
                self.setting),
            "controls": self.controls()}

  def test(self, suspect: recipe.TrainedModel,
           suspect_config) -> dict[str, Any]:
    """The verdict of the paper's paired t-test and the test over models
    on ``suspect``, controls aside (what a false-acceptance rate counts):
    the paired test's record (statistic, delta_p, m) with the joint
    ``p_value``, ``log10_p_value`` and ``decision``, and each test's own
    p-value."""
    references = self._for(suspect_config)
    result = move.verify(self.move, self.key, references.meta, suspect,
                         references.benign_references, self.setting)
    record = result.to_dict()
    return {**verdict_record(result.test, result.alpha, result.stolen),
            **{name: record[name] for name in (
                "p_value", "log10_p_value", "p_value_definition",
                "paired_p_value", "reference_statistic", "reference_p_value",
                "reference_log10_p", "suspect_score", "reference_scores",
                "mu_suspect", "mu_benign")}}

  def verdict(self, suspect: recipe.TrainedModel,
              suspect_config) -> dict[str, Any]:
    """The test's verdict on ``suspect`` (``test_decision``), the
    ``decision`` that its architecture's controls leave of it, and those
    controls' own decisions (``controls``)."""
    record = self.test(suspect, suspect_config)
    controls = self.controls(suspect_config)
    return {**record, "test_decision": record["decision"],
            "decision": controlled_decision(record["decision"], controls),
            "controls": {role: control["decision"]
                         for role, control in controls.items()}}


def controlled_decision(test_decision: str,
                        controls: dict[str, dict[str, Any]]) -> str:
  """A test's decision on a suspect, unless the verifier's controls
  disown it: a rejection while ``controls["unseen_benign"]`` (innocent)
  was rejected too, or a retention while
  ``controls["unseen_victim_like"]`` (watermarked) was retained too, is
  :data:`~jaxwm.verify.levels.INCONCLUSIVE`."""
  if test_decision not in (REJECT, RETAIN):
    raise ValueError(f"test_decision={test_decision!r}: expected {REJECT!r} "
                     f"or {RETAIN!r}")
  disowning = {REJECT: "unseen_benign", RETAIN: "unseen_victim_like"}
  control = controls[disowning[test_decision]]["decision"]
  return INCONCLUSIVE if control == test_decision else test_decision


class BadNetsOwner:
  """BadNets model watermarking: the victim is trained on the owner's half
  with a poisoned-label patch backdoor (the dataset watermark's code,
  block ``watermark``); a suspect is verified black-box by the dataset
  watermark's one-sided paired t-test on triggered test images (block
  ``verify``: H0: the target class's probability rises by at most tau).
  """

  def __init__(self, run: Run):
    config = run.config
    block = config.watermark.to_dict()
    marked, self.key = poison_methods.mark_dataset(
        run.owner, block,
        jax.random.fold_in(jax.random.key(config.seed), BADNETS_STREAM))
    self.run = run
    self.victim_parts = ("badnets", block)
    self.victim = recipe.train_model(
        config, marked,
        workdir=run.model_dir("victim", config, *self.victim_parts),
        stream=VICTIM_STREAM)
    self.benign = recipe.train_model(config, run.owner,
                                     workdir=run.model_dir("benign", config),
                                     stream=BENIGN_STREAM)
    self.alpha = float(config.verify.alpha)

  def summary(self) -> dict[str, Any]:
    return {"name": "badnets",
            "poisoned_samples": int(self.key.poisoned_indices.size)}

  def verdict(self, suspect: recipe.TrainedModel,
              suspect_config) -> dict[str, Any]:
    del suspect_config  # black-box
    return dataset_watermark_verdict(self.run, self.key, suspect)
