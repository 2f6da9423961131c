"""Fine-tuning repair: train the suspect model on a little clean data.

The UBW paper's fine-tuning defence (Appendix C.3) freezes the
convolutional layers and tunes the fully connected ones on 10% of the
benign training data, learning rate 0.1, for 100 epochs; those are the
defaults of :class:`FineTuneConfig`. ``layers="head"`` tunes the
classification layer alone (the only fully connected layer of the paper's
ResNet-18; jaxwm's CNN has a dense layer before it). ``layers="all"``
tunes every layer (the all-layer variant, usually with a smaller learning
rate such as 0.01). The optimizer, batch size, weight decay and
augmentation are the training config's, with a constant learning rate or
a cosine decay.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from jaxwm.data.dataset import Dataset
from jaxwm.defenses import repair_engine
from jaxwm.steal import finetune
from jaxwm.train import recipe
from jaxwm.train import weight_average
from jaxwm.train.state import TrainState

FC = "fc"
HEAD = "head"
ALL = "all"


@dataclasses.dataclass(frozen=True)
class FineTuneConfig:
  """Fine-tuning settings.

  Attributes:
    layers: ``"fc"`` (fully connected layers only, the convolutional ones
      frozen), ``"head"`` (the classification layer only) or ``"all"``.
    learning_rate: the learning rate (UBW C.3: 0.1, constant; the first of
      a step or cosine schedule).
    num_epochs: epochs over the clean data (UBW C.3: 100).
    schedule: ``"constant"`` (UBW C.3), ``"cosine"`` (decay to 0 over
      the epochs) or ``"step"`` (a tenth of the rate for the last fifth of
      them).
    average_epochs: the fine-tuned model is the mean of the weights and
      batch statistics at the ends of this many last epochs (stochastic
      weight averaging, as WILD's default); 0 or 1: the last epoch's.
  """

  layers: str = FC
  learning_rate: float = 0.1
  num_epochs: int = 100
  schedule: str = repair_engine.CONSTANT
  average_epochs: int = 0

  def __post_init__(self):
    if self.layers not in (FC, HEAD, ALL):
      raise ValueError(f"layers must be {FC!r}, {HEAD!r} or {ALL!r}, got "
                       f"{self.layers!r}.")
    repair_engine.check_schedule(self.learning_rate, self.num_epochs,
                                 self.schedule)
    weight_average.check_average_epochs(self.average_epochs, self.num_epochs)


def repair(config, model: recipe.TrainedModel, clean: Dataset,
           settings: FineTuneConfig = FineTuneConfig(), *,
           workdir: str | None = None, stream: int = 0,
           on_epoch_end: Callable[[int, TrainState], Any] | None = None
           ) -> recipe.TrainedModel:
  """Fine-tunes ``model`` on ``clean``.

  Args:
    config: the model's training config (``configs/train.py`` fields); its
      model must be ``model``'s architecture.
    model: the suspect model.
    clean: the defender's clean data (e.g. 10% of the training set).
    settings: which layers, learning rate and epochs.
    workdir: checkpoint folder (a rerun resumes); None: no checkpoints.
    stream: the engine's key stream (data order, augmentation).
    on_epoch_end: called as ``on_epoch_end(epoch, state)`` after each
      epoch (for curves over epochs: ``dataclasses.replace(model,
      state=state)`` is the model at that epoch, to be measured during the
      call: the next step reuses the state's buffers).

  Returns:
    The fine-tuned model (same class and interface).
  """
  repair_engine.check_clean_data(model, clean)
  trainable = None  # ALL: every parameter
  if settings.layers == FC:
    trainable = repair_engine.fully_connected(model.variables["params"])
  elif settings.layers == HEAD:
    trainable = finetune.is_head
  return repair_engine.train_repair(
      repair_engine.repair_recipe(config, settings.learning_rate,
                                  settings.num_epochs, settings.schedule),
      model, clean, average_epochs=settings.average_epochs, workdir=workdir,
      stream=stream, trainable=trainable, on_epoch_end=on_epoch_end)
