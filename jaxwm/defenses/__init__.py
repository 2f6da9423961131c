"""Defences: training-time options against poisons (input noise, DP-SGD)."""

from jaxwm.defenses.dp_sgd import make_dp_sgd_step
from jaxwm.defenses.dp_sgd import train_model as train_model_dp_sgd
from jaxwm.defenses.input_noise import additive_noise
from jaxwm.defenses.input_noise import compose
from jaxwm.defenses.input_noise import gaussian_blur
from jaxwm.defenses.input_noise import gaussian_smoothing
