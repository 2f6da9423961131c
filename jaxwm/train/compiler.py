"""``jit`` with the XLA:CPU settings under which convolutions train fastest.

XLA:CPU hands convolutions, dots and reductions to the YNNPACK library by
default. On the 2-core AVX-512 machine jaxwm's experiments run on, the
convolutions YNNPACK runs are the slow part of a training step: the
Fashion-MNIST CNN's step runs ~1.35x faster, and ResNet-18's ~1.15x, when
convolutions go back to XLA's own (Eigen) kernels while YNNPACK keeps the
dots and reductions, and 512-bit vectors are preferred on CPUs that have
them (benchmarks/RESULTS.md has the figures and commands). The settings are
per-compilation (``jax.jit(..., compiler_options=...)``), so they reach only
jaxwm's own programs, and only when they compile for the CPU: accelerator
programs compile exactly as before (the options are not passed at all).

A jaxlib that does not know one of these options (they are XLA debug
options and may be renamed) keeps its defaults: :func:`cpu_compiler_options`
tries them once on a tiny program and drops them if they are refused.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable

import jax
import jax.numpy as jnp

# YNNPACK keeps dots and reductions; convolutions use XLA's own kernels.
_YNN_FUSION_TYPES = ("LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
                     "LIBRARY_FUSION_TYPE_REDUCE")


def _host_has_avx512() -> bool:
  try:
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
      return any(line.startswith("flags") and " avx512f" in line
                 for line in f)
  except OSError:
    return False


@functools.cache
def cpu_compiler_options() -> dict[str, Any]:
  """The XLA:CPU options jaxwm compiles with; {} where jaxlib refuses them."""
  options: dict[str, Any] = {
      "xla_cpu_experimental_ynn_fusion_type": ",".join(_YNN_FUSION_TYPES)}
  if _host_has_avx512():
    options["xla_cpu_prefer_vector_width"] = 512
  try:
    jax.jit(jnp.sin, compiler_options=options)(
        jnp.zeros(2)).block_until_ready()
  except Exception as error:  # pylint: disable=broad-except
    logging.warning("XLA:CPU refused jaxwm's compile options %s (%s); "
                    "compiling with XLA's defaults.", options, error)
    return {}
  return options


def jit(fun: Callable[..., Any], **jit_kwargs: Any) -> Callable[..., Any]:
  """``jax.jit(fun, **jit_kwargs)``, with :func:`cpu_compiler_options` when
  JAX's default backend is the CPU."""
  if jax.default_backend() == "cpu":
    jit_kwargs = {"compiler_options": cpu_compiler_options(), **jit_kwargs}
  return jax.jit(fun, **jit_kwargs)
