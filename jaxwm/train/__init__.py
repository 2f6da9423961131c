"""The one training engine: state, step factory, fit/evaluate, sharding,
checkpoints."""

from jaxwm.train.checkpoint import Checkpointer, CorruptedCheckpointError
from jaxwm.train.loop import (TrainingDivergedError, evaluate, fit,
                              predict_logits)
from jaxwm.train.losses import accuracy, cross_entropy, cross_entropy_loss
from jaxwm.train.optim import (freeze, learning_rate_schedule, make_optimizer,
                               schedule_from_config)
from jaxwm.train.sharding import (batch_sharded, initialize_distributed,
                                  make_mesh, replicate, replicated)
from jaxwm.train.state import TrainState, create_train_state
from jaxwm.train.step import make_predict_fn, make_train_step
