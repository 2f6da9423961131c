"""Model ownership under the six model-stealing attacks:
``--config=configs/model_stealing.py:VARIANT``.

VARIANT is a method followed by the variant of ``configs/train.py`` (a
dataset, optionally a model, optionally ``runlocal``), e.g.
``move_whitebox,fashion_mnist`` or ``move_blackbox,digits,runlocal``.
The methods:

* ``move_whitebox``, ``move_blackbox``: MOVE, external features (a style
  transfer of 10% of the victim's training images, labels kept) verified
  by a meta-classifier on the suspect's gradient signs (white-box) or
  prediction differences (black-box) and a one-sided paired t-test.
* ``badnets``: BadNets model watermarking, a baseline: a poisoned-label
  patch backdoor in 10% of the victim's training images (target class 1;
  block ``watermark``, as ``configs/dataset_watermark.py``), verified
  black-box by the dataset watermark's paired t-test on the target
  class's probability over triggered test images of every class but the
  target (block ``verify``).
* ``entangled``: Entangled Watermarks, a baseline: after the owner's
  model has trained, it trains on with watermark batches (source-class
  images with a patch where the soft nearest neighbour loss's input
  gradient is largest, labelled the target class, beside target-class
  images) whose representations the SNNL entangles (block ``entangled``,
  :class:`jaxwm.watermark.entangled.EntangledConfig`), verified black-box
  by a one-sided t-test of the suspect's watermark success on triggered
  source-class test images against the benign model's.
* ``gradient_matching``: a dataset watermark crafted by gradient matching,
  a baseline: Sleeper Agent's clean-label poisons (blocks ``poison``,
  ``watermark`` and ``verify`` of ``configs/craft_poison.py``), crafted
  with a surrogate trained on the owner's half, verified as ``badnets``
  on triggered source-class test images.
* ``dataset_inference_whitebox``, ``dataset_inference_blackbox``: Dataset
  Inference, a baseline without a watermark: the victim is a plain
  model; a confidence regressor learns its distances to the decision
  boundary (MinGD white-box, Blind Walk black-box) on its training
  samples against test samples, and a suspect is verified by a one-sided
  Welch t-test on the regressor's confidences on m private and m public
  samples it never saw (block ``dataset_inference``).

The training set is split into disjoint halves (``split.attacker_fraction``
0.5): the owner trains the victim (watermarked) and the benign model on
its half; the thief steals on the other half; the independent model is
trained on the thief's half too, with another seed and a narrower
architecture (``independent``), and must not be accused.

The meta-classifier learns from ``meta.num_models`` victim-like models
(the victim and others trained on the watermarked set with other seeds)
against as many benign ones; the ``meta.num_references`` benign models
that verification compares with are kept out of its training. A
meta-classifier that knew only one victim and one benign model learnt
those two models rather than the external features, and accused
independently trained models; and the paper's paired t-test against one
benign model accused 30% (white-box) and 66% (black-box) of independent
models, so a suspect is judged stolen only if it also scores above the
benign references by a test over models
(``jaxwm.watermark.move.verification``).

The attacks' settings (``steal``) are those of :mod:`jaxwm.steal`,
scaled to the Fashion-MNIST ``cnn`` recipe; ``runlocal`` shrinks them to
a smoke run.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from configs import craft_poison as craft_configs
from configs import dataset_watermark as dataset_configs
from configs import train as train_configs
from jaxwm.watermark import move

MOVE_METHODS = {"move_whitebox": "white_box", "move_blackbox": "black_box"}
DATASET_INFERENCE_METHODS = {"dataset_inference_whitebox": "white_box",
                             "dataset_inference_blackbox": "black_box"}
METHODS = (*MOVE_METHODS, "badnets", "entangled", "gradient_matching",
           *DATASET_INFERENCE_METHODS)
ATTACKS = ("direct_copy", "distillation", "zero_shot", "fine_tuning",
           "label_query", "logit_query")


def _placeholder(kind):
  return ml_collections.config_dict.placeholder(kind)


def _student() -> ml_collections.ConfigDict:
  """A student's recipe (:class:`jaxwm.steal.StudentRecipe`); None: the
  victim's."""
  return ml_collections.ConfigDict(dict(
      model=_placeholder(str), num_epochs=_placeholder(int),
      learning_rate=_placeholder(float)))


def _steal() -> ml_collections.ConfigDict:
  """The attacks' settings (:class:`jaxwm.steal.StealConfig`)."""
  distillation = _student()
  distillation.temperature = 4.0
  return ml_collections.ConfigDict(dict(
      fine_tuning=dict(variant="ftal", num_epochs=3, learning_rate=0.005),
      distillation=distillation,
      zero_shot=dict(iterations=1500, student_steps=5, batch_size=128,
                     noise_dim=100, generator_width=32,
                     generator_learning_rate=1e-3,
                     student_learning_rate=0.1, log_every=100,
                     checkpoint_every=500),
      label_query=_student(),
      logit_query=_student()))


def _move(setting: str) -> ml_collections.ConfigDict:
  """MOVE's settings (:class:`jaxwm.watermark.move.MoveConfig`) and the
  setting verified."""
  return ml_collections.ConfigDict(dict(
      setting=setting,
      seed=0,
      style_source="texture:0",
      transform_rate=0.1,           # gamma, Section 6.1.
      verification_fraction=0.2,    # kept out of the meta-classifier.
      m_white_box=10,               # Section 6.1.
      m_black_box=100,
      alpha=0.01,
      # Per weight kernel, the log-ratio of the gradient norms on a
      # stylised image and its benign version, and the gradients' cosine
      # (invariant to the order of hidden units); "gradient_signs" is the
      # paper's Eq. 4.
      white_box_features="gradient_comparisons",
      gradient_batch_size=32,
      shift=2,
      # Adam steps per stylised image; the other style-transfer settings
      # are MoveConfig's defaults.
      style=dict(steps=100),
      # The meta-classifiers (MetaClassifierConfig: hidden widths D // d,
      # Adam, cosine decay, weight decay, epochs), MoveConfig's defaults
      # written out so that a flag can change them, e.g.
      # --config.move.white_box.weight_decay=0.01.
      white_box=_meta_classifier_defaults(move.WHITE_BOX),
      black_box=_meta_classifier_defaults(move.BLACK_BOX),
  ))


def _meta_classifier_defaults(setting: str) -> dict:
  """MoveConfig's meta-classifier settings for ``setting``, as a dict."""
  return dataclasses.asdict(move.MoveConfig().meta_classifier(setting))


def _add_move(config: ml_collections.ConfigDict, setting: str,
              runlocal: bool) -> None:
  """MOVE's blocks ``move`` and ``meta``, in place."""
  config.move = _move(setting)
  config.meta = ml_collections.ConfigDict(dict(
      # Victim-like and benign models the meta-classifier learns from
      # (each), besides the benign model verification compares with.
      num_models=3,
      # Benign models it never saw, for the test over models (the first
      # is the paired test's benign model).
      num_references=8,
  ))
  if config.dataset == "digits":
    # The owner's 719 images give 72 restyled ones, 14 kept for
    # verification: the black-box test uses them all.
    config.move.m_black_box = 14
  if runlocal:
    config.meta.num_models = 2
    config.meta.num_references = 3
    config.move.transform_rate = 0.3
    config.move.verification_fraction = 0.5
    config.move.m_black_box = 10
    config.move.style.steps = 20
    for meta in ("white_box", "black_box"):
      config.move[meta].batch_size = 16


def _add_badnets(config: ml_collections.ConfigDict, method: str,
                 runlocal: bool) -> None:
  """The BadNets baseline's blocks ``watermark`` and ``verify``, in
  place."""
  config.watermark = dataset_configs.watermark_config(method)
  # The triggered test images of every class but the target are verified
  # (``verify.source_classes`` absent); the dataset watermark's fields.
  config.verify = ml_collections.ConfigDict(dict(
      m=20 if runlocal else 100, tau=0.25, seed=0, alpha=0.01))


def _add_entangled(config: ml_collections.ConfigDict,
                   runlocal: bool) -> None:
  """The Entangled Watermarks baseline's block ``entangled``, in place
  (the reference implementation's MNIST settings)."""
  config.entangled = ml_collections.ConfigDict(dict(
      source_class=1, target_class=7, patch_size=3, factor=32.0,
      temperature=1.0, metric="cosine", layers=("features",),
      clean_per_watermark_batch=1.0, num_epochs=10, learning_rate=0.01,
      m=100, alpha=0.01))
  if runlocal:
    config.entangled.num_epochs = 2
    config.entangled.m = 20


def _add_gradient_matching(config: ml_collections.ConfigDict, rest: str,
                           runlocal: bool) -> None:
  """The gradient-matching baseline's blocks ``poison``, ``watermark`` and
  ``verify``: ``configs/craft_poison.py``'s Sleeper Agent ones, in
  place."""
  crafting = craft_configs.get_config(f"sleeper_agent,{rest}")
  for block in ("poison", "watermark", "verify"):
    config[block] = crafting[block]
  if runlocal:
    # Its test queries the source class alone: the smoke run's models need
    # the data to classify some of it right.
    config.train_fraction, config.train.num_epochs = 0.5, 4


def _add_dataset_inference(config: ml_collections.ConfigDict, setting: str,
                           runlocal: bool) -> None:
  """Dataset Inference's block ``dataset_inference``
  (:class:`jaxwm.watermark.dataset_inference.DatasetInferenceConfig`; the
  distances' steps and the regressor are its defaults, the authors'),
  in place."""
  config.dataset_inference = ml_collections.ConfigDict(dict(
      setting=setting, seed=0,
      regressor_samples=500,  # private and public samples, each.
      m=50, alpha=0.01))
  if config.dataset == "digits":  # 359 test images: the public set.
    config.dataset_inference.regressor_samples = 250
  if runlocal:
    block = config.dataset_inference
    block.regressor_samples, block.m, block.norms = 24, 10, ("linf", "l2")
    block.mingd = dict(num_steps=20, step_linf=0.05, step_l2=0.25)
    block.blind_walk = dict(num_steps=10, num_directions=4,
                            uniform_linf=0.05, gaussian_l2=0.05)
    block.regressor = dict(steps=100)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  method, rest = train_configs.split_variant(
      arg, METHODS,
      "move_whitebox,fashion_mnist or move_blackbox,digits,runlocal")
  config = train_configs.base_config(rest, method)
  runlocal = "runlocal" in rest.split(",")
  config.method = method
  config.split = ml_collections.ConfigDict(dict(attacker_fraction=0.5))
  config.attacks = ATTACKS
  config.steal = _steal()
  config.independent = ml_collections.ConfigDict(dict(
      seed_offset=1,                # its seed: config.seed + seed_offset.
      model=_placeholder(str),      # None: the victim's architecture...
      model_kwargs=dict(width=16),  # ... narrower (the cnn's is 32).
  ))
  if method in MOVE_METHODS:
    _add_move(config, MOVE_METHODS[method], runlocal)
  elif method == "entangled":
    _add_entangled(config, runlocal)
  elif method == "gradient_matching":
    _add_gradient_matching(config, rest, runlocal)
  elif method in DATASET_INFERENCE_METHODS:
    _add_dataset_inference(config, DATASET_INFERENCE_METHODS[method],
                           runlocal)
  else:
    _add_badnets(config, method, runlocal)
  if runlocal:
    config.independent.model_kwargs.width = 8
    config.steal.fine_tuning.num_epochs = 1
    zero_shot = config.steal.zero_shot
    zero_shot.iterations, zero_shot.batch_size = 4, 32
    zero_shot.student_steps, zero_shot.generator_width = 2, 8
    zero_shot.log_every, zero_shot.checkpoint_every = 1, 2
  return config
