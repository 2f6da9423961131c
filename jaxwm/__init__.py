"""jaxwm: ownership protection of datasets and models in JAX/Flax."""

from jaxwm import host_memory

# Before JAX starts its CPU threads: see jaxwm/host_memory.py.
host_memory.retain_freed_memory()

__version__ = "0.1.0"
