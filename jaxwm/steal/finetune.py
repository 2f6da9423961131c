"""Fine-tuning removal attacks and transfer learning (Adi et al., Section 4.4).

The four attacks of the paper's "Unremovability" experiments, each trained
by the engine on data the attacker holds (a held-out part of the training
distribution, :func:`jaxwm.data.disjoint_split`):

====  ===========================  ======================================
name  output layer ("head")        other layers
====  ===========================  ======================================
FTLL  kept, fine-tuned             frozen
FTAL  kept, fine-tuned             fine-tuned
RTLL  re-initialised, trained      frozen
RTAL  re-initialised, trained      fine-tuned
====  ===========================  ======================================

Schedule (Section 4.6): "for the fine-tuning tasks, we used the last learning
rate that was used during training", constant, for as many epochs as the
training ("the adversary can fine-tune the models using the same amount of
training instances and epochs"); :func:`final_learning_rate` and
:func:`finetune_config` build that recipe.

Freezing is the engine's ``trainable`` predicate on parameter paths. The
batch-norm statistics of frozen layers still follow the attacker's data, as
they do when a network in training mode is fine-tuned.

Transfer learning (Section 4.4, "Transfer Learning") is RTAL on another
dataset; the paper verifies the watermark with the model's *original*
output layer put back on the transferred body (:func:`with_head`), because
the new head answers in the new task's classes. :func:`to_image_shape`
brings the other dataset to the model's input shape (e.g. 8x8 digits to
28x28 for a Fashion-MNIST model).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxwm.data.dataset import Dataset
from jaxwm.models.common import HEAD
from jaxwm.train import recipe


@dataclasses.dataclass(frozen=True)
class FineTuning:
  """One fine-tuning attack.

  Attributes:
    name: "ftll", "ftal", "rtll" or "rtal".
    last_layer_only: only the output layer is updated (..LL).
    reinitialise_head: the output layer starts from random weights (RT..).
  """

  name: str
  last_layer_only: bool
  reinitialise_head: bool


ATTACKS = {
    "ftll": FineTuning("ftll", last_layer_only=True, reinitialise_head=False),
    "ftal": FineTuning("ftal", last_layer_only=False, reinitialise_head=False),
    "rtll": FineTuning("rtll", last_layer_only=True, reinitialise_head=True),
    "rtal": FineTuning("rtal", last_layer_only=False, reinitialise_head=True),
}


def get_attack(name: str) -> FineTuning:
  """The attack called ``name`` (case-insensitive)."""
  attack = ATTACKS.get(str(name).lower())
  if attack is None:
    raise ValueError(
        f"unknown fine-tuning attack {name!r}; use one of "
        f"{', '.join(ATTACKS)}.")
  return attack


def final_learning_rate(train_config) -> float:
  """The last learning rate of a ``config.train`` recipe (Section 4.6).

  ``"constant"``: the learning rate; ``"step"``: learning_rate *
  gamma^len(milestones).

  Raises:
    ValueError: for ``"cosine"``, which ends at 0; set the fine-tuning
      learning rate explicitly.
  """
  schedule = train_config.schedule
  if schedule == "constant":
    return float(train_config.learning_rate)
  if schedule == "step":
    return float(train_config.learning_rate *
                 train_config.gamma**len(tuple(train_config.milestones)))
  raise ValueError(
      f"the {schedule!r} schedule has no usable last learning rate (cosine "
      "decays to 0); train with a 'step' schedule or give the fine-tuning "
      "learning rate explicitly.")


def finetune_config(config, *, learning_rate: float, num_epochs: int):
  """A copy of ``config`` whose ``train`` recipe is a constant-rate run.

  Args:
    config: a config with the fields of ``configs/train.py``.
    learning_rate: the constant learning rate, > 0.
    num_epochs: epochs of the run, >= 1.

  Returns:
    The copy (optimizer, batch size, weight decay and augmentation kept).
  """
  if not learning_rate > 0.0:
    raise ValueError(f"learning_rate must be > 0, got {learning_rate}.")
  if int(num_epochs) < 1:
    raise ValueError(f"num_epochs must be >= 1, got {num_epochs}.")
  derived = config.copy_and_resolve_references()
  derived.train.learning_rate = float(learning_rate)
  derived.train.num_epochs = int(num_epochs)
  derived.train.schedule = "constant"
  derived.train.warmup_epochs = 0.0
  return derived


def is_head(path: tuple[str, ...]) -> bool:
  """Whether a parameter path lies in the output layer."""
  return bool(path) and path[0] == HEAD


def without_head(variables: dict[str, Any]) -> dict[str, Any]:
  """``variables`` with the output layer's parameters removed."""
  params = variables["params"]
  if HEAD not in params:
    raise ValueError(
        f"the model has no output layer named {HEAD!r} (its parameters are "
        f"{sorted(params)}); jaxwm models name their classifier {HEAD!r}.")
  return {**variables,
          "params": {name: value for name, value in params.items()
                     if name != HEAD}}


def fine_tune(config, model: recipe.TrainedModel, data: Dataset,
              attack: str | FineTuning, *, workdir: str | None = None,
              stream: int = 0) -> recipe.TrainedModel:
  """Runs one fine-tuning attack on ``model``.

  Args:
    config: the attack's config (``config.train`` is its recipe, e.g. from
      :func:`finetune_config`); its model must be ``model``'s architecture.
    model: the (marked) model under attack.
    data: the attacker's training data; with a re-initialised head it may
      have other classes than ``model`` (transfer learning).
    attack: a name in :data:`ATTACKS` or a :class:`FineTuning`.
    workdir: checkpoint folder (a rerun resumes); None: no checkpoints.
    stream: the engine's key stream (it draws the re-initialised head).

  Returns:
    The fine-tuned model.
  """
  if not isinstance(attack, FineTuning):
    attack = get_attack(attack)
  variables = model.variables
  if attack.reinitialise_head:
    variables = without_head(variables)
  return recipe.train_model(
      config, data, workdir=workdir, stream=stream, init_variables=variables,
      trainable=is_head if attack.last_layer_only else None)


def with_head(body: recipe.TrainedModel,
              head_from: recipe.TrainedModel) -> recipe.TrainedModel:
  """``body``'s layers (and batch statistics) under ``head_from``'s head.

  Transfer learning verification (Section 4.4): the original output layer,
  saved before the transfer, is put back on the transferred network.
  """
  params = jax.device_get(body.state.params)
  if set(params) != set(jax.device_get(head_from.state.params)):
    raise ValueError(
        "the two models have different layers; with_head needs the same "
        "architecture (only the number of classes may differ).")
  params = {**params, HEAD: jax.device_get(head_from.state.params[HEAD])}
  state = head_from.state.replace(
      params=jax.tree.map(jnp.asarray, params),
      model_state=body.state.model_state)
  return dataclasses.replace(head_from, state=state)


def to_image_shape(dataset: Dataset, image_shape) -> Dataset:
  """Resizes (bilinear, antialiased) and matches channels of a dataset.

  Grey images become colour by repeating the channel; colour images become
  grey by averaging the channels.

  Args:
    dataset: uint8 images [N, h, w, c].
    image_shape: the target (H, W, C); C must equal c, or one of them be 1.

  Returns:
    The dataset with uint8 images [N, H, W, C], same labels and classes.
  """
  height, width, channels = (int(d) for d in image_shape)
  have = dataset.image_shape[2]
  if channels != have and 1 not in (channels, have):
    raise ValueError(
        f"cannot turn {have}-channel images into {channels}-channel ones; "
        "only grey <-> colour conversions are defined.")
  images = dataset.float_images()
  if channels != have:
    images = (np.repeat(images, channels, axis=-1) if have == 1 else
              images.mean(axis=-1, keepdims=True))
  resized = jax.image.resize(jnp.asarray(images),
                             (len(dataset), height, width, channels),
                             method="linear", antialias=True)
  pixels = np.round(np.clip(np.asarray(resized), 0.0, 1.0) * 255.0)
  return dataset.replace(images=pixels.astype(np.uint8))
