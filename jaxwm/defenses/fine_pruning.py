"""Fine-pruning repair (Liu et al., 2018): prune, then fine-tune.

The last convolutional layer's least active channels are pruned
(:mod:`jaxwm.defenses.pruning`) and the pruned model is fine-tuned on the
clean data (all layers by default, :mod:`jaxwm.defenses.fine_tuning`).
The pruning edit is applied again after fine-tuning, so the pruned
channels stay removed in any architecture: in conv-BN-ReLU networks it
changes nothing, as a zeroed channel gets zero gradients there; in
residual networks it zeroes again the head's rows that the fine-tuning
has grown back.
"""

from __future__ import annotations

import dataclasses

from jaxwm.data.dataset import Dataset
from jaxwm.defenses import fine_tuning
from jaxwm.defenses import pruning
from jaxwm.train import recipe


@dataclasses.dataclass(frozen=True)
class FinePruneConfig:
  """Fine-pruning settings.

  Attributes:
    prune: the pruning rate.
    fine_tune: the fine-tuning after pruning (default all layers, learning
      rate 0.01, 10 epochs).
  """

  prune: pruning.PruneConfig = pruning.PruneConfig()
  fine_tune: fine_tuning.FineTuneConfig = fine_tuning.FineTuneConfig(
      layers=fine_tuning.ALL, learning_rate=0.01, num_epochs=10)


def repair(config, model: recipe.TrainedModel, clean: Dataset,
           settings: FinePruneConfig = FinePruneConfig(), *,
           workdir: str | None = None,
           stream: int = 0) -> recipe.TrainedModel:
  """Prunes ``model`` on ``clean``, fine-tunes it there, and prunes again.

  Args:
    config: the model's training config (``configs/train.py`` fields).
    model: the suspect model.
    clean: the defender's clean data.
    settings: the pruning rate and the fine-tuning.
    workdir: checkpoint folder of the fine-tuning; None: no checkpoints.
    stream: the engine's key stream of the fine-tuning.
  """
  ranking = pruning.rank_channels(model, clean)
  rate = settings.prune.rate
  tuned = fine_tuning.repair(config, pruning.prune(model, ranking, rate),
                             clean, settings.fine_tune, workdir=workdir,
                             stream=stream)
  return pruning.prune(tuned, ranking, rate)
