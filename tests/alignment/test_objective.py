"""The alignment objective, target losses, target gradients and gradient norms."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.alignment import objective
from jaxwm.data.augment import AugmentConfig
from jaxwm.models import get_model
from jaxwm.train import losses, make_mesh


def _tree(a, b):
  return {"w": jnp.asarray(a, jnp.float32), "b": {"x": jnp.asarray(b,
                                                                   jnp.float32)}}


def test_alignment_loss_hand_values():
  g = _tree([1.0, 2.0], [2.0])
  assert float(objective.alignment_loss(g, g)) == pytest.approx(0.0, abs=1e-6)
  opposite = jax.tree.map(lambda x: -3.0 * x, g)
  assert float(objective.alignment_loss(g, opposite)) == pytest.approx(
      2.0, abs=1e-6)
  orthogonal = _tree([2.0, -1.0], [0.0])
  assert float(objective.alignment_loss(g, orthogonal)) == pytest.approx(
      1.0, abs=1e-6)
  # cos = <(1,0,0),(1,1,0)> / (1 * sqrt 2) = 1/sqrt 2 across leaves.
  assert float(objective.alignment_loss(_tree([1, 0], [0]), _tree(
      [1, 0], [1]))) == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-6)
  # The value does not depend on the mode.
  assert float(objective.alignment_loss(g, orthogonal, True)) == pytest.approx(
      1.0, abs=1e-6)


def test_independent_mode_detaches_the_denominator():
  target = _tree([3.0, 0.0], [4.0])            # ||T|| = 5
  crafting = _tree([1.0, 2.0], [2.0])          # ||g|| = 3, <T, g> = 11
  full = jax.grad(objective.alignment_loss)(crafting, target, False)
  independent = jax.grad(objective.alignment_loss)(crafting, target, True)
  flat = lambda t: np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])
  t, g = flat(target), flat(crafting)
  # Independent: d/dg (1 - <T, g> / c) = -T / (||T|| ||g||) = -T / 15.
  np.testing.assert_allclose(flat(independent), -t / 15, rtol=1e-6)
  # Full: -(T / 15 - cos * g / ||g||^2) with cos = 11/15; orthogonal to g.
  np.testing.assert_allclose(flat(full), -(t / 15 - (11 / 15) * g / 9),
                             rtol=1e-5, atol=1e-7)
  assert abs(float(np.dot(flat(full), g))) < 1e-6
  assert float(np.dot(flat(independent), g)) == pytest.approx(-11 / 15,
                                                              rel=1e-5)
  assert not np.allclose(flat(full), flat(independent))


def test_gradient_norm_loss():
  assert float(objective.gradient_norm_loss(_tree([3.0, 0.0], [4.0]))) == (
      pytest.approx(5.0))


def test_reverse_cross_entropy_hand_values_and_stability():
  logits = jnp.array([[0.0, 0.0], [math.log(3.0), 0.0], [100.0, 0.0]])
  labels = jnp.array([0, 0, 0])
  values = np.asarray(objective.reverse_cross_entropy(logits, labels))
  # p_y = 1/2 -> log 2; p_y = 3/4 -> log 4; p_y = 1 - e^-100 -> ~100.
  np.testing.assert_allclose(values[:2], [math.log(2), math.log(4)],
                             rtol=1e-6)
  assert values[2] == pytest.approx(100.0, rel=1e-6)
  assert np.all(np.isfinite(np.asarray(jax.grad(
      lambda z: jnp.sum(objective.reverse_cross_entropy(z, labels)))(logits))))


def test_dispersion_loss_hand_values():
  # Uniform prediction over K = 4: CE = H = log 4.
  logits = jnp.zeros((1, 4))
  value = float(objective.dispersion_loss(logits, jnp.array([2]), lam=2.0)[0])
  assert value == pytest.approx(-3 * math.log(4), rel=1e-6)
  # A confident correct prediction has CE and H near 0.
  sharp = jnp.array([[30.0, 0.0, 0.0, 0.0]])
  assert abs(float(objective.dispersion_loss(sharp, jnp.array([0]))[0])) < 1e-6


def test_dispersion_loss_gradient_is_finite_for_a_confident_surrogate():
  # A logit gap of 200 rounds softmax to (1, 0, 0) in float32; the entropy
  # of rounded probabilities had a 0 / 0 = NaN derivative there.
  logits = jnp.array([[200.0, 0.0, -5.0]])
  labels = jnp.array([1])
  value, grad = jax.value_and_grad(
      lambda z: jnp.sum(objective.dispersion_loss(z, labels, lam=2.0)))(logits)
  # CE = 200 and H ~ 0; d CE / dz = p - e_y = (1, -1, 0), d H / dz ~ 0.
  assert float(value) == pytest.approx(-200.0, rel=1e-6)
  np.testing.assert_allclose(np.asarray(grad), [[-1.0, 1.0, 0.0]], atol=1e-6)


def test_dispersion_loss_gradient_matches_the_analytic_one():
  # d H / dz_j = -p_j (ln p_j + H) and d CE / dz = p - e_y.
  logits = jnp.array([[1.5, -0.5, 0.25, 3.0]])
  labels = jnp.array([2])
  lam = 2.0
  grad = jax.grad(lambda z: jnp.sum(objective.dispersion_loss(
      z, labels, lam)))(logits)
  p = np.asarray(jax.nn.softmax(logits), np.float64)[0]
  entropy = -np.sum(p * np.log(p))
  expected = -((p - np.eye(4)[2]) + lam * (-p * (np.log(p) + entropy)))
  np.testing.assert_allclose(np.asarray(grad)[0], expected, atol=1e-6)


@functools.lru_cache(maxsize=None)
def _tiny(num_classes=4):
  model = get_model("cnn", num_classes, width=4, dense_width=16)
  variables = jax.jit(model.init, static_argnames="train")(
      jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)), train=False)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (24, 8, 8, 1), dtype=np.uint8)
  labels = (np.arange(24) % num_classes).astype(np.int32)
  return model, dict(variables), images, labels


@pytest.mark.parametrize("independent", [False, True])
def test_crafting_gradient_equals_reverse_over_reverse(independent):
  model, variables, images, labels = _tiny()
  x = jnp.asarray(images[:8], jnp.float32) / 255
  y = jnp.asarray(labels[:8])
  w = jnp.array([1.0] * 7 + [0.0])
  delta = 0.03 * jax.random.normal(jax.random.PRNGKey(3), x.shape)
  target = jax.tree.map(lambda p: jax.random.normal(jax.random.PRNGKey(4),
                                                    p.shape),
                        variables["params"])
  augment = AugmentConfig(shift=1, flip=True)
  transform = lambda z: augment.apply(z, jax.random.PRNGKey(5))
  loss_of = lambda g: objective.alignment_loss(g, target, independent)
  value, grad = jax.jit(
      lambda d: objective.crafting_gradient(model, variables, x, d, y, w,
                                            loss_of, transform))(delta)

  def composed(d):
    return loss_of(objective.loss_gradient(model, variables,
                                             transform(x + d), y, w))

  expected_value, expected = jax.jit(jax.value_and_grad(composed))(delta)
  assert np.all(np.isfinite(np.asarray(grad)))
  assert float(value) == pytest.approx(float(expected_value), rel=1e-5)
  scale = float(jnp.max(jnp.abs(expected)))
  assert scale > 0
  np.testing.assert_allclose(np.asarray(grad), np.asarray(expected),
                             atol=1e-4 * scale)
  # The padded row (weight 0) gets no gradient.
  assert float(jnp.max(jnp.abs(grad[-1]))) == 0.0


def test_target_is_the_mean_gradient_over_all_rows_on_any_mesh():
  model, variables, images, labels = _tiny()
  params = variables["params"]
  state = {"batch_stats": variables["batch_stats"]}
  expected = jax.jit(lambda v, x, y: objective.loss_gradient(
      model, v, x / 255, y, jnp.ones(len(labels)),
      objective.reverse_cross_entropy))(variables, images.astype(np.float32),
                                        labels)
  for devices in (1, jax.device_count()):
    # 24 rows in batches of 16: the second batch is half padding.
    target = objective.make_target(
        model, images, labels, objective.reverse_cross_entropy,
        batch_size=16, mesh=make_mesh(jax.devices()[:devices]))
    got = target(params, state)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4,
                                 atol=1e-6)


def test_targets_sharing_one_upload_match_their_own_targets():
  model, variables, images, labels = _tiny()
  params = variables["params"]
  state = {"batch_stats": variables["batch_stats"]}
  mesh = make_mesh(jax.devices()[:2])
  batches = objective.upload_target_set(images, labels, batch_size=16,
                                        mesh=mesh)
  first_leaves = []
  for loss in (objective.reverse_cross_entropy, losses.cross_entropy):
    shared = objective.target_on_batches(model, batches, loss, mesh)(
        params, state)
    own = objective.make_target(model, images, labels, loss, batch_size=16,
                                mesh=mesh)(params, state)
    for a, b in zip(jax.tree.leaves(shared), jax.tree.leaves(own)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    first_leaves.append(np.asarray(jax.tree.leaves(shared)[0]))
  # The two losses give different gradients over the same upload.
  assert not np.allclose(*first_leaves)


def test_make_target_rejects_empty_sets():
  model, _, images, labels = _tiny()
  with pytest.raises(ValueError, match="at least one image"):
    objective.make_target(model, images[:0], labels[:0],
                          losses.cross_entropy, batch_size=8)


def test_per_example_gradient_norms():
  model, variables, images, labels = _tiny()
  norms = objective.per_example_gradient_norms(model, variables, images[:10],
                                               labels[:10], batch_size=8)
  assert norms.shape == (10,)
  norm = jax.jit(lambda x, y: objective.tree_norm(objective.loss_gradient(
      model, variables, x / 255, y, jnp.ones(1))))
  # Rows on the first and on later devices of the suite's mesh, and in
  # the padded second batch.
  for i in (0, 5, 9):
    assert norms[i] == pytest.approx(
        float(norm(images[i:i + 1].astype(np.float32), labels[i:i + 1])),
        rel=1e-4)
