"""Flax models and a registry by name."""

from jaxwm.models.common import FEATURES, HEAD, apply_with_features
from jaxwm.models.registry import get_model, model_names, register
