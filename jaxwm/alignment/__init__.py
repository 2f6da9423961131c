"""The gradient-alignment engine every crafted poison in jaxwm shares.

Modules:
  objective: the objective 1 - cos(T, g(delta)) and TensorClog's norm, the
    target losses and target gradients, per-example gradient norms.
  crafting: the crafting loop (restarts, signed Adam, milestones,
    projection, bi-level rounds, ensembles, checkpoints).
  regularizers: visibility penalties on the perturbations.
  selection: which samples to perturb.
  transfer: the poison's alignment at any parameters and along a victim's
    training.

The availability poisons and the clean-label watermarks of
:mod:`jaxwm.poison` are built on it.
"""

from jaxwm.alignment.crafting import craft
from jaxwm.alignment.crafting import CraftConfig
from jaxwm.alignment.crafting import CraftResult
from jaxwm.alignment.crafting import initial_optimizer_state
from jaxwm.alignment.crafting import make_craft_step
from jaxwm.alignment.crafting import NonFiniteCraftingError
from jaxwm.alignment.crafting import project
from jaxwm.alignment.crafting import quantize
from jaxwm.alignment.crafting import retrain_on_dataset
from jaxwm.alignment.crafting import RetrainSurrogate
from jaxwm.alignment.crafting import signed_adam
from jaxwm.alignment.objective import alignment_loss
from jaxwm.alignment.objective import crafting_gradient
from jaxwm.alignment.objective import dispersion_loss
from jaxwm.alignment.objective import gradient_norm_loss
from jaxwm.alignment.objective import loss_gradient
from jaxwm.alignment.objective import make_target
from jaxwm.alignment.objective import per_device_rows
from jaxwm.alignment.objective import per_example_gradient_norms
from jaxwm.alignment.objective import PerExampleLoss
from jaxwm.alignment.objective import reverse_cross_entropy
from jaxwm.alignment.objective import stacked_batch_sharding
from jaxwm.alignment.objective import Target
from jaxwm.alignment.regularizers import Regularizers
from jaxwm.alignment.selection import candidates
from jaxwm.alignment.selection import select_samples
from jaxwm.alignment.selection import SELECTIONS
from jaxwm.alignment.transfer import alignment_curve
from jaxwm.alignment.transfer import alignment_probe
