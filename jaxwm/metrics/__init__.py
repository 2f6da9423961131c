"""Watermark metrics: accuracy, attack success and dispersibility.

Pure jnp functions; see the UBW paper, Section 5.1 and Definitions 1-2.
"""

from jaxwm.metrics._checks import UndefinedMetricError
from jaxwm.metrics.attack_success import asr_a
from jaxwm.metrics.attack_success import asr_c
from jaxwm.metrics.attack_success import benign_accuracy
from jaxwm.metrics.dispersibility import class_dispersibility
from jaxwm.metrics.dispersibility import entropy
from jaxwm.metrics.dispersibility import entropy_from_logits
from jaxwm.metrics.dispersibility import prediction_dispersibility
from jaxwm.metrics.dispersibility import sample_dispersibility
