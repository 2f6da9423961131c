"""Dataset watermarks: triggers, poisoned-label and Label-Consistent marking,
watermark keys and ownership verification with them."""

from jaxwm.poison.label_consistent import LabelConsistentConfig
from jaxwm.poison.ownership import verify_dataset_ownership
from jaxwm.poison.poisoned_label import mark
from jaxwm.poison.poisoned_label import PoisonedLabelConfig
from jaxwm.poison.triggers import badnets_trigger
from jaxwm.poison.triggers import blend
from jaxwm.poison.triggers import BlendTrigger
from jaxwm.poison.triggers import blended_trigger
from jaxwm.poison.triggers import wanet_trigger
from jaxwm.poison.triggers import warp
from jaxwm.poison.triggers import WarpTrigger
from jaxwm.poison.watermark_key import WatermarkKey
