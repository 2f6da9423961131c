"""Every registered model: shapes, features, gradients, bf16 compute.

Compiling a deep network's backward pass takes seconds on a CPU, so shapes
are checked on every input size by tracing only (``jax.eval_shape``); finite
gradients are computed for one model of each family on every input size
(the deeper members stack more of the same blocks), and every model's
forward pass runs in bf16.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxwm.models import FEATURES, HEAD, get_model, model_names

BATCH = 2
NUM_CLASSES = 7
INPUT_SHAPES = ((8, 8, 1), (28, 28, 1), (32, 32, 3))
# Width of "features" (the penultimate representation) per model.
FEATURE_WIDTHS = {"cnn": 256, "resnet18": 512, "resnet34": 512,
                  "vgg16_bn": 512, "vgg19_bn": 512, "wrn16_4": 256,
                  "wrn28_10": 640}
# Number of sown stage outputs block1..blockN per model.
NUM_BLOCKS = {"cnn": 2, "resnet18": 4, "resnet34": 4, "vgg16_bn": 5,
              "vgg19_bn": 5, "wrn16_4": 3, "wrn28_10": 3}
COMPUTED_SHAPE = (32, 32, 3)


def _shape_id(shape):
  return "x".join(map(str, shape))


def _images(shape):
  rng = np.random.default_rng(1)
  return jnp.asarray(rng.uniform(size=(BATCH, *shape)), jnp.float32)


FAMILY_REPRESENTATIVES = ("cnn", "resnet18", "vgg16_bn", "wrn16_4")


@functools.lru_cache(maxsize=None)
def _variables(name, shape=COMPUTED_SHAPE):
  # The "unsafe_rbg" key compiles several times faster than threefry on CPU.
  key = jax.random.key(0, impl="unsafe_rbg")
  return jax.jit(get_model(name, NUM_CLASSES).init)(key, _images(shape))


def _train_loss_grad(model, variables, x):
  """Cross-entropy gradient of a train-mode step, with logits and sown."""
  labels = jnp.arange(x.shape[0]) % NUM_CLASSES

  def loss_fn(params):
    logits, updates = model.apply(
        {**variables, "params": params}, x, train=True,
        mutable=["batch_stats", "intermediates"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return loss.mean(), (logits, updates["intermediates"])

  return jax.grad(loss_fn, has_aux=True)(variables["params"])


def test_registry_lists_every_model():
  assert set(model_names()) == set(FEATURE_WIDTHS)


def test_unknown_model_names_the_choices():
  with pytest.raises(ValueError, match="resnet18"):
    get_model("resnet19", NUM_CLASSES)


@pytest.mark.parametrize("shape", INPUT_SHAPES, ids=_shape_id)
@pytest.mark.parametrize("name", sorted(FEATURE_WIDTHS))
def test_output_feature_and_gradient_shapes(name, shape):
  model = get_model(name, NUM_CLASSES)
  x = jax.ShapeDtypeStruct((BATCH, *shape), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  grads, (logits, sown) = jax.eval_shape(
      functools.partial(_train_loss_grad, model), variables, x)

  assert logits.shape == (BATCH, NUM_CLASSES)
  assert logits.dtype == jnp.float32
  assert sown[FEATURES][0].shape == (BATCH, FEATURE_WIDTHS[name])
  assert {f"block{i}" for i in range(1, NUM_BLOCKS[name] + 1)} <= set(sown)
  assert jax.tree.map(lambda a: (a.shape, a.dtype), grads) == jax.tree.map(
      lambda a: (a.shape, a.dtype), variables["params"])


@pytest.mark.parametrize("name, shape", [
    (name, shape) for name in FAMILY_REPRESENTATIVES
    for shape in INPUT_SHAPES])
def test_train_mode_gradients_are_finite(name, shape):
  model = get_model(name, NUM_CLASSES)
  grads, (logits, _) = jax.jit(functools.partial(_train_loss_grad, model))(
      _variables(name, shape), _images(shape))

  assert bool(jnp.isfinite(logits).all())
  assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))
  # The loss depends on the head, so its gradient cannot vanish.
  assert float(jnp.abs(grads[HEAD]["kernel"]).sum()) > 0


@pytest.mark.parametrize("name", sorted(FEATURE_WIDTHS))
def test_bfloat16_compute_keeps_float32_params(name):
  model = get_model(name, NUM_CLASSES, dtype=jnp.bfloat16)
  abstract = jax.eval_shape(
      model.init, jax.random.key(0),
      jax.ShapeDtypeStruct((BATCH, *COMPUTED_SHAPE), jnp.float32))
  assert {p.dtype for p in jax.tree.leaves(abstract["params"])} == {
      jnp.dtype(jnp.float32)}

  apply = jax.jit(functools.partial(model.apply, mutable=["intermediates"]))
  logits, sown = apply(_variables(name), _images(COMPUTED_SHAPE))
  assert logits.dtype == jnp.float32
  assert logits.shape == (BATCH, NUM_CLASSES)
  assert bool(jnp.isfinite(logits).all())
  assert sown["intermediates"][FEATURES][0].dtype == jnp.bfloat16


@pytest.mark.parametrize("name, expected", [
    ("resnet18", 11_173_962),  # CIFAR ResNet-18, 10 classes, RGB.
    ("wrn28_10", 36_479_194),  # WRN-28-10, the paper's ~36.5M.
])
def test_parameter_count_known_answers(name, expected):
  model = get_model(name, 10)
  variables = jax.eval_shape(model.init, jax.random.key(0),
                             jnp.zeros((1, 32, 32, 3)))
  assert sum(np.prod(p.shape) for p in
             jax.tree.leaves(variables["params"])) == expected


def test_wrn_rejects_depth_not_6n_plus_4():
  model = get_model("wrn16_4", NUM_CLASSES, depth=15)
  with pytest.raises(ValueError, match="15"):
    model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
