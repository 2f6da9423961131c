"""Model stealing: the attacks a model's owner must survive.

Modules:
  attacks: the six attacks of MOVE's evaluation (direct copy, fine-tuning,
    distillation, zero-shot, label-query, logit-query) behind one entry
    point, :func:`steal`, with their settings and query counts.
  finetune: the fine-tuning removal attacks of Adi et al. (FTLL, FTAL,
    RTLL, RTAL) and transfer learning.
  zero_shot: data-free adversarial distillation (generator and student).
  student: a stolen model's architecture and recipe relative to the
    victim's.
  losses: the attacks' engine losses (KL at a temperature, L1 on logits).
"""

from jaxwm.steal.attacks import ATTACKS
from jaxwm.steal.attacks import DistillationConfig
from jaxwm.steal.attacks import FineTuningConfig
from jaxwm.steal.attacks import steal
from jaxwm.steal.attacks import StealConfig
from jaxwm.steal.attacks import StolenModel
from jaxwm.steal.student import StudentRecipe
from jaxwm.steal.zero_shot import ZeroShotConfig
