"""Defences: training-time options against poisons (input noise, DP-SGD)
and repairs of a suspect model with limited clean data (fine-tuning,
pruning, fine-pruning, WILD, NAD, MCR; by name in :mod:`repairs`) and
backdoor detectors (Neural Cleanse, STRIP, spectral signatures, activation
clustering, Grad-CAM; all at once in :mod:`detector_suite`)."""

from jaxwm.defenses.detector_suite import DetectorSuiteConfig
from jaxwm.defenses.detector_suite import run_detectors
from jaxwm.defenses.dp_sgd import make_dp_sgd_step
from jaxwm.defenses.dp_sgd import train_model as train_model_dp_sgd
from jaxwm.defenses.input_noise import additive_noise
from jaxwm.defenses.input_noise import compose
from jaxwm.defenses.input_noise import gaussian_blur
from jaxwm.defenses.input_noise import gaussian_smoothing
from jaxwm.defenses.repairs import REPAIRS
from jaxwm.defenses.repairs import make_settings as make_repair_settings
from jaxwm.defenses.repairs import run_repair
