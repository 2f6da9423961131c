"""jaxwm.fingerprint: folder names and SHA-256 identities of what makes a
run (arrays, variables, functions)."""

import functools
import hashlib

import jax
import jax.numpy as jnp
import numpy as np

from jaxwm.data.augment import AugmentConfig
from jaxwm.fingerprint import (array_digest, callable_identity, fingerprint,
                               tree_digest, value_digest)


def test_known_answer_and_canonical_order():
  # Canonical JSON of the tuple of parts: '[{"a": 1, "b": [2, 3]}, "x"]'.
  expected = hashlib.sha256(b'[{"a": 1, "b": [2, 3]}, "x"]').hexdigest()[:16]
  assert fingerprint({"a": 1, "b": (2, 3)}, "x") == expected
  assert fingerprint({"b": (2, 3), "a": 1}, "x") == expected


def test_any_change_gives_another_name():
  names = {fingerprint(0, "cnn"), fingerprint(1, "cnn"),
           fingerprint(0, "resnet18"), fingerprint("0", "cnn"),
           fingerprint(0, "cnn", None)}
  assert len(names) == 5


def test_array_digest_known_answer_covers_dtype_and_shape():
  array = np.arange(6, dtype=np.uint8).reshape(2, 3)
  expected = hashlib.sha256(b'["uint8", [2, 3]]' + bytes(range(6)))
  assert array_digest(array) == expected.hexdigest()
  # The same bytes as another shape or dtype, or a transposed copy, differ.
  assert len({array_digest(array), array_digest(array.reshape(3, 2)),
              array_digest(array.view(np.int8)),
              array_digest(array.T)}) == 4
  assert array_digest(jnp.asarray(array)) == array_digest(array)
  key = jax.random.key(3)
  assert array_digest(key) == array_digest(jax.random.key_data(key))


def test_tree_digest_sees_paths_and_values_not_insertion_order():
  tree = {"dense": {"kernel": np.ones((2, 2)), "bias": np.zeros(2)}}
  reordered = {"dense": {"bias": np.zeros(2), "kernel": np.ones((2, 2))}}
  assert tree_digest(tree) == tree_digest(reordered)
  renamed = {"head": tree["dense"]}
  changed = {"dense": {**tree["dense"], "bias": np.full(2, 1e-9)}}
  assert len({tree_digest(tree), tree_digest(renamed),
              tree_digest(changed)}) == 3


def _scaled(factor, table):
  def scale(x):
    return factor * table[x]
  return scale


def test_callable_identity_names_the_function_and_sees_its_captures():
  table = np.arange(4)
  identity = callable_identity(_scaled(2, table))
  assert identity["name"] == "test_fingerprint._scaled.<locals>.scale"
  assert callable_identity(_scaled(2, table.copy())) == identity
  # Another captured number or array, another digest under the same name.
  for other in (_scaled(3, table), _scaled(2, table + 1)):
    assert callable_identity(other)["name"] == identity["name"]
    assert callable_identity(other)["digest"] != identity["digest"]
  assert callable_identity(None) is None
  # Partials, bound methods of dataclasses and jitted functions.
  partial = functools.partial(np.clip, a_min=0)
  assert callable_identity(partial)["digest"] != callable_identity(
      functools.partial(np.clip, a_min=1))["digest"]
  shifts = [callable_identity(AugmentConfig(shift=s).apply) for s in (1, 2)]
  assert shifts[0]["name"] == "jaxwm.data.augment.AugmentConfig.apply"
  assert shifts[0]["digest"] != shifts[1]["digest"]
  jitted = callable_identity(jax.jit(_scaled(2, table)))
  assert jitted == identity


def test_value_digest_of_unknown_objects_uses_their_type():
  class Opaque:
    def __init__(self, value):
      self.value = value
  assert value_digest(Opaque(1)) == value_digest(Opaque(2))
  # Sequences count by their contents, as a config's tuples read back from
  # JSON as lists.
  assert value_digest({"a": (1, 2)}) == value_digest({"a": [1, 2]})
  assert value_digest({"a": (1, 2)}) != value_digest({"a": (2, 1)})
