"""The six model-stealing attacks of MOVE's evaluation (Sections 2.1, 6.1).

=============  =================  ==========================================
attack         thief's access     how the stolen model is made
=============  =================  ==========================================
direct_copy    the model file     the victim's weights, as they are
fine_tuning    the model file     the victim fine-tuned on the attacker's
                                  images labelled by its top-1 (FTAL of
                                  :mod:`jaxwm.steal.finetune`)
distillation   the training data  a student trained on the victim's
                                  probabilities at temperature T (KL, T^2)
zero_shot      the model file     data-free adversarial distillation
                                  (:mod:`jaxwm.steal.zero_shot`)
label_query    queries (labels)   a student trained on the attacker's
                                  images labelled by the victim's top-1
logit_query    queries (probs)    a student trained on the victim's
                                  probability vectors (KL)
=============  =================  ==========================================

Every stolen model is trained by the training engine
(:func:`jaxwm.train.recipe.train_model`, or its step for zero-shot); the
attacks differ in their starting weights, targets and loss only.
``StolenModel.queries`` counts the images the victim answered: each attacker
image once (the victim's answers are fixed targets, and the engine's
augmentation of ``config.train`` then applies to the images as in any
training), none for direct copy, every generated image for zero-shot.

The paper's settings (CIFAR-10, WideResNets, 200 victim epochs; it follows
Dataset Inference's, whose substitute data are 500,000 TinyImages) and the
defaults here (scaled to the Fashion-MNIST ``cnn`` recipe of
``configs/train.py``, 12 epochs): distillation, label- and logit-query
train for the victim's number of epochs on the attacker's data (the
paper's 20 query epochs over 500,000 images are as many image visits as
the victim's 200 epochs over 50,000); fine-tuning runs 3 epochs at a tenth
of the cnn's learning rate (the paper: 5 epochs over 500,000 images, a
quarter of the victim's image visits; Dataset Inference's code: 0.01, a
tenth of its victim's rate); the paper does not give its distillation
temperature (Dataset Inference uses T = 1), T = 4 here. The students have
the victim's architecture unless their settings name another (the
paper's are smaller WideResNets). MOVE's distillation thief holds the
victim's training data; here it distils on whatever ``attacker_data`` the
caller passes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import ml_collections
import numpy as np

from jaxwm.data.dataset import Dataset
from jaxwm.steal import finetune
from jaxwm.steal import losses as steal_losses
from jaxwm.steal import zero_shot
from jaxwm.steal.student import check_positive, num_classes, StudentRecipe
from jaxwm.train import recipe

DIRECT_COPY = "direct_copy"
FINE_TUNING = "fine_tuning"
DISTILLATION = "distillation"
ZERO_SHOT = "zero_shot"
LABEL_QUERY = "label_query"
LOGIT_QUERY = "logit_query"
# The paper's order (Tables III-VI).
ATTACKS = (DIRECT_COPY, DISTILLATION, ZERO_SHOT, FINE_TUNING, LABEL_QUERY,
           LOGIT_QUERY)


@dataclasses.dataclass(frozen=True)
class FineTuningConfig:
  """The fine-tuning attack.

  Attributes:
    variant: which layers move (:data:`jaxwm.steal.finetune.ATTACKS`):
      ``"ftal"`` (all layers, the paper's) or ``"ftll"``, ``"rtll"``,
      ``"rtal"``.
    num_epochs: epochs over the attacker's data (paper: 5).
    learning_rate: constant learning rate (Dataset Inference's code: 0.01,
      a tenth of its victim's; 0.005 is a tenth of the cnn recipe's).
  """

  variant: str = "ftal"
  num_epochs: int = 3
  learning_rate: float = 0.005

  def __post_init__(self):
    finetune.get_attack(self.variant)
    check_positive("num_epochs", self.num_epochs, integer=True)
    check_positive("learning_rate", self.learning_rate)


@dataclasses.dataclass(frozen=True)
class DistillationConfig(StudentRecipe):
  """The distillation attack: a :class:`StudentRecipe` and T.

  Attributes:
    temperature: T of the victim's soft labels and the student's softmax
      (the paper's code takes it as an argument; 4 here).
  """

  temperature: float = 4.0

  def __post_init__(self):
    super().__post_init__()
    check_positive("temperature", self.temperature)


_BLOCKS = {"fine_tuning": FineTuningConfig,
           "distillation": DistillationConfig,
           "zero_shot": zero_shot.ZeroShotConfig,
           "label_query": StudentRecipe, "logit_query": StudentRecipe}


@dataclasses.dataclass(frozen=True)
class StealConfig:
  """The settings of every attack (direct copy has none)."""

  fine_tuning: FineTuningConfig = FineTuningConfig()
  distillation: DistillationConfig = DistillationConfig()
  zero_shot: zero_shot.ZeroShotConfig = zero_shot.ZeroShotConfig()
  label_query: StudentRecipe = StudentRecipe()
  logit_query: StudentRecipe = StudentRecipe()

  @classmethod
  def from_dict(cls, values: Mapping[str, Mapping[str, Any]]
                ) -> StealConfig:
    """From ``{attack: {setting: value}}`` (e.g. ``ConfigDict.to_dict()``);
    missing attacks and settings keep their defaults."""
    _check_known(values, _BLOCKS, "attack")
    blocks = {}
    for name, block in values.items():
      kind = _BLOCKS[name]
      _check_known(block, {f.name for f in dataclasses.fields(kind)},
                   f"{name} setting")
      blocks[name] = kind(**block)
    return cls(**blocks)

  def to_dict(self) -> dict[str, dict[str, Any]]:
    return dataclasses.asdict(self)


def _check_known(values: Mapping[str, Any], known, what: str) -> None:
  unknown = sorted(set(values) - set(known))
  if unknown:
    raise ValueError(f"unknown {what}(s) {unknown}; known: {sorted(known)}.")


@dataclasses.dataclass(frozen=True)
class StolenModel:
  """The outcome of one attack.

  Attributes:
    name: the attack (one of :data:`ATTACKS`).
    model: the stolen model.
    queries: images the victim answered for the attack.
  """

  name: str
  model: recipe.TrainedModel
  queries: int


def check_attack(name: str) -> str:
  """``name`` if it is one of :data:`ATTACKS`, else a ValueError."""
  if name not in ATTACKS:
    raise ValueError(f"unknown model-stealing attack {name!r}; use one of "
                     f"{', '.join(ATTACKS)}.")
  return name


def student_config(name: str, config, settings: StealConfig | None = None
                   ) -> ml_collections.ConfigDict:
  """The training config (``configs/train.py`` fields) of the model that
  attack ``name`` makes from a victim of ``config``: ``config`` itself for
  direct copy and fine-tuning (the victim's architecture), the student's
  recipe otherwise (an owner who verifies white-box needs its
  architecture)."""
  settings = StealConfig() if settings is None else settings
  if check_attack(name) in (DIRECT_COPY, FINE_TUNING):
    return config.copy_and_resolve_references()
  if name == ZERO_SHOT:
    return settings.zero_shot.student_config(config)
  return getattr(settings, name).config(config)


def victim_labelled(data: Dataset, labels: np.ndarray,
                    classes: int) -> Dataset:
  """``data``'s images with the victim's labels int [N] in its K classes
  (the attacker's class names are kept when there are K of them)."""
  names = data.class_names if len(data.class_names) == classes else ()
  return dataclasses.replace(data, labels=labels, num_classes=classes,
                             class_names=names)


def _check_same_architecture(config, victim: recipe.TrainedModel) -> None:
  built = recipe.build_model(config, num_classes(victim))
  if built != victim.model:
    raise ValueError(
        "fine-tuning starts from the victim's weights, so config.model and "
        "config.model_kwargs must be the victim's architecture; the config "
        f"builds {built!r} but the victim is {victim.model!r}.")


def _fine_tuning(config, victim, data, settings: StealConfig, **run):
  block = settings.fine_tuning
  _check_same_architecture(config, victim)
  labels = victim.predict(data.images)
  tuned = finetune.fine_tune(
      finetune.finetune_config(config, learning_rate=block.learning_rate,
                               num_epochs=block.num_epochs),
      victim, victim_labelled(data, labels, num_classes(victim)),
      block.variant, **run)
  return tuned, len(data)


def _train_student(config, victim, data, student: StudentRecipe, *,
                   temperature: float | None, **run):
  """A student of ``student``'s recipe on the victim's answers: top-1
  labels (``temperature`` None) or probabilities at ``temperature``."""
  logits = victim.logits(data.images)
  task = victim_labelled(data, np.argmax(logits, axis=-1),
                         num_classes(victim))
  if temperature is None:
    return recipe.train_model(student.config(config), task, **run), len(data)
  targets = np.asarray(steal_losses.soft_targets(logits, temperature))
  return recipe.train_model(
      student.config(config), task, targets=targets,
      loss_fn=steal_losses.distillation_loss(temperature), **run), len(data)


def _distillation(config, victim, data, settings: StealConfig, **run):
  block = settings.distillation
  return _train_student(config, victim, data, block,
                        temperature=block.temperature, **run)


def _label_query(config, victim, data, settings: StealConfig, **run):
  return _train_student(config, victim, data, settings.label_query,
                        temperature=None, **run)


def _logit_query(config, victim, data, settings: StealConfig, **run):
  return _train_student(config, victim, data, settings.logit_query,
                        temperature=1.0, **run)


def _zero_shot(config, victim, data, settings: StealConfig, **run):
  return zero_shot.steal_data_free(config, victim, data.image_shape,
                                   settings.zero_shot, **run)


_TRAINED = {FINE_TUNING: _fine_tuning, DISTILLATION: _distillation,
            ZERO_SHOT: _zero_shot, LABEL_QUERY: _label_query,
            LOGIT_QUERY: _logit_query}


def steal(name: str, victim: recipe.TrainedModel, attacker_data: Dataset,
          config, settings: StealConfig | None = None, *,
          workdir: str | None = None, stream: int = 0) -> StolenModel:
  """Steals ``victim`` with the attack ``name``.

  Args:
    name: one of :data:`ATTACKS`.
    victim: the model stolen.
    attacker_data: the thief's images, uint8 [N, H, W, C] at the victim's
      input shape; their labels are never used (the victim labels them).
      Direct copy ignores it; zero-shot reads only its image shape.
    config: the victim's training config (``configs/train.py`` fields):
      the stolen model's architecture, seed and recipe, which the attack's
      settings override where they say.
    settings: the attacks' settings; default :class:`StealConfig()`.
    workdir: checkpoint folder of the stolen model's training (a rerun
      resumes; another run's checkpoint raises
      :class:`jaxwm.identity.StaleRunError`); None: no checkpoints.
    stream: the engine's key stream for the stolen model.

  Returns:
    The :class:`StolenModel`.
  """
  check_attack(name)
  if name == DIRECT_COPY:
    return StolenModel(name, dataclasses.replace(victim), 0)
  settings = StealConfig() if settings is None else settings
  model, queries = _TRAINED[name](config, victim, attacker_data, settings,
                                  workdir=workdir, stream=stream)
  return StolenModel(name, model, queries)
