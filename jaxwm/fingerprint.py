"""SHA-256 fingerprints of what makes a run: configs, arrays and functions.

:func:`fingerprint` gives short, stable folder names; :func:`array_digest`,
:func:`tree_digest`, :func:`value_digest` and :func:`callable_identity`
give the full SHA-256 identities that a run's identity record
(:mod:`jaxwm.identity`) keeps of its training data, initial variables and
custom functions.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import types
from typing import Any, Callable, Mapping

import jax
import numpy as np

# How deep :func:`value_digest` follows nested values and captured objects.
_MAX_DEPTH = 8


def _sha256_json(value: Any) -> str:
  encoded = json.dumps(value, sort_keys=True, default=str).encode("utf-8")
  return hashlib.sha256(encoded).hexdigest()


def fingerprint(*parts: Any) -> str:
  """16 hex digits of the SHA-256 of ``parts`` as canonical JSON.

  Used to name a model's checkpoint folder after everything it depends on
  (configs, seeds, key digests), so that a rerun with the same inputs finds
  and reuses it and a run with different inputs never does. Values JSON
  cannot encode are written with ``str``.
  """
  return _sha256_json(parts)[:16]


def array_digest(array: Any) -> str:
  """64 hex digits: the SHA-256 of an array's dtype, shape and bytes.

  Args:
    array: a NumPy or JAX array (a JAX array is copied to the host; a typed
      PRNG key counts by its key data), of any shape and a numeric or bool
      dtype.

  The bytes are hashed in C order without a copy when the array already is
  C-contiguous: the 60,000 Fashion-MNIST training images (uint8
  [60000, 28, 28, 1], 47 MB) take about 50 ms on one CPU core.
  """
  if isinstance(array, jax.Array) and jax.dtypes.issubdtype(
      array.dtype, jax.dtypes.prng_key):
    array = jax.random.key_data(array)
  array = np.ascontiguousarray(np.asarray(array))
  if array.dtype == object:
    raise TypeError("array_digest hashes numeric arrays; got dtype object.")
  sha = hashlib.sha256(json.dumps([str(array.dtype),
                                   list(array.shape)]).encode("utf-8"))
  sha.update(array.reshape(-1).view(np.uint8))
  return sha.hexdigest()


def tree_digest(tree: Any) -> str:
  """64 hex digits: the SHA-256 of a pytree's leaf paths and array digests
  (e.g. a model's variables; device arrays are fetched in one transfer)."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(jax.device_get(tree))
  return _sha256_json([[jax.tree_util.keystr(path), array_digest(leaf)]
                       for path, leaf in leaves])


def _type_name(value: Any) -> str:
  kind = value if isinstance(value, type) else type(value)
  return f"{kind.__module__}.{kind.__qualname__}"


def _function_name(fn: Callable[..., Any]) -> str:
  module = getattr(fn, "__module__", None) or "?"
  return f"{module}.{getattr(fn, '__qualname__', _type_name(fn))}"


def _describe_function(fn: types.FunctionType, depth: int) -> dict[str, Any]:
  cells = []
  for cell in fn.__closure__ or ():
    try:
      cells.append(_describe(cell.cell_contents, depth + 1))
    except ValueError:  # an empty cell (a name not yet bound)
      cells.append(None)
  return {"function": _function_name(fn), "closure": cells,
          "defaults": _describe(fn.__defaults__, depth + 1),
          "kwdefaults": _describe(fn.__kwdefaults__, depth + 1)}


def _describe_callable(fn: Callable[..., Any], depth: int) -> Any:
  if isinstance(fn, functools.partial):
    return {"partial": _describe(fn.func, depth + 1),
            "args": _describe(fn.args, depth + 1),
            "keywords": _describe(fn.keywords, depth + 1)}
  if isinstance(fn, types.MethodType):
    return {"method": _function_name(fn.__func__),
            "self": _describe(fn.__self__, depth + 1)}
  if hasattr(fn, "__wrapped__"):  # jax.jit, functools.wraps
    return _describe(fn.__wrapped__, depth)
  if isinstance(fn, types.FunctionType):
    return _describe_function(fn, depth)
  return {"type": _type_name(fn)}


def _describe(value: Any, depth: int = 0) -> Any:
  """A JSON-able description of ``value`` for :func:`value_digest`."""
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  if depth > _MAX_DEPTH:
    return {"type": _type_name(value)}
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, (np.ndarray, jax.Array)):
    return {"array": array_digest(value)}
  if isinstance(value, Mapping):  # dicts, Flax's FrozenDict
    return {str(k): _describe(v, depth + 1) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_describe(v, depth + 1) for v in value]
  if isinstance(value, (type, types.ModuleType)):
    return {"type": getattr(value, "__qualname__", value.__name__),
            "module": getattr(value, "__module__", value.__name__)}
  if dataclasses.is_dataclass(value):
    return {"type": _type_name(value),
            "fields": {f.name: _describe(getattr(value, f.name, None),
                                         depth + 1)
                       for f in dataclasses.fields(value)}}
  if hasattr(value, "to_dict"):  # ml_collections.ConfigDict
    return _describe(value.to_dict(), depth + 1)
  if callable(value):
    return _describe_callable(value, depth)
  return {"type": _type_name(value)}


def value_digest(value: Any) -> str:
  """64 hex digits: the SHA-256 of a description of ``value``.

  The description holds numbers, strings and None as they are; arrays by
  :func:`array_digest`; mappings, lists and tuples, dataclasses (by their
  fields) and ConfigDicts by their contents; functions by their qualified
  name and, recursively, the values their closures capture and their
  defaults; ``functools.partial`` objects by their function and arguments;
  bound methods by their function and instance. Any other object counts
  by its type's name only, so what changes inside it is not seen.
  """
  return _sha256_json(_describe(value))


def callable_identity(fn: Callable[..., Any] | None) -> dict[str, str] | None:
  """``{"name", "digest"}`` identifying a custom function, or None for None.

  ``name`` is the qualified name (``module.qualname``, e.g.
  ``jaxwm.train.losses.cross_entropy_loss``) and ``digest`` the
  :func:`value_digest` of the function: its name and what it captures, so
  that the trigger arrays a closure mixes into batches, or the radius of a
  smoothing defence, are part of it. The code of the function is not: an
  edited function of the same name has the same identity (the jaxwm version
  in a run's identity stands for jaxwm's own code).
  """
  if fn is None:
    return None
  target = fn.func if isinstance(fn, functools.partial) else fn
  target = getattr(target, "__func__", target)
  return {"name": _function_name(getattr(target, "__wrapped__", target)),
          "digest": value_digest(fn)}
