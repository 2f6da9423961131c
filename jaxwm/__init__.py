"""jaxwm: ownership protection of datasets and models in JAX/Flax."""

__version__ = "0.1.0"
