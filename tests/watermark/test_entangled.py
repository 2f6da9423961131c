"""Entangled Watermarks: the SNNL, the trigger's place, the watermark
batches and the embedding through the engine (digits, a tiny MLP)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tiny
from configs import train as train_configs
from jaxwm import data as jaxwm_data
from jaxwm.models import registry
from jaxwm.train import recipe
from jaxwm.watermark import entangled

MODEL = "entangled_tests_mlp"


def _direct_snnl(x, labels, temperature, metric):
  """Eq. 1 by loops in float64, rows without a same-label partner left
  out."""
  x = np.asarray(x, np.float64)
  if metric == entangled.COSINE:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    distance = 1.0 - unit @ unit.T
  else:
    distance = ((x[:, None] - x[None]) ** 2).sum(-1)
  terms = []
  for i in range(len(x)):
    same = sum(np.exp(-distance[i, j] / temperature) for j in range(len(x))
               if j != i and labels[j] == labels[i])
    every = sum(np.exp(-distance[i, k] / temperature)
                for k in range(len(x)) if k != i)
    if any(labels[j] == labels[i] for j in range(len(x)) if j != i):
      terms.append(-np.log(same / every))
  return np.mean(terms)


@pytest.mark.parametrize("metric,temperature", itertools.product(
    entangled.METRICS, (0.5, 3.0)))
def test_snnl_equals_the_direct_sum(metric, temperature):
  rng = np.random.default_rng(7)
  x = rng.normal(size=(9, 6)).astype(np.float32)
  labels = np.array([0, 1, 0, 1, 1, 0, 2, 1, 0])  # class 2: no partner.
  got = entangled.snnl(jnp.asarray(x), jnp.asarray(labels), temperature,
                       metric)
  assert float(got) == pytest.approx(
      _direct_snnl(x, labels, temperature, metric), rel=1e-4)


def test_snnl_gradient_is_finite_for_far_apart_points():
  x = jnp.asarray([[0.0, 0.0], [1e4, 0.0], [-1e4, 3e3], [3e4, -2e4]])
  labels = jnp.asarray([0, 1, 0, 1])
  for metric in entangled.METRICS:
    value, gradient = jax.value_and_grad(entangled.snnl)(
        x, labels, 0.1, metric)
    assert np.isfinite(float(value))
    assert np.all(np.isfinite(np.asarray(gradient)))


def test_trigger_position_is_the_largest_window():
  gradient = np.zeros((2, 8, 8, 1), np.float32)
  gradient[:, 4:7, 1:4] = 1.0
  gradient[:, 0, 7] = 5.0  # a large pixel, but a smaller 3x3 sum.
  assert entangled.trigger_position(gradient, 3) == (4, 1)
  with pytest.raises(ValueError, match="patch_size 9"):
    entangled.trigger_position(gradient, 9)


def test_the_classes_must_differ_and_exist():
  with pytest.raises(ValueError, match="must differ"):
    entangled.EntangledConfig(source_class=3, target_class=3)
  with pytest.raises(ValueError, match="target_class = 12"):
    entangled.EntangledConfig(target_class=12).check_classes(10)


def test_watermark_batches_hold_triggers_then_target_images():
  key = entangled.EntangledKey((0, 0), 2, source_class=1, target_class=7)
  triggers = np.full((5, 4, 4, 1), 255, np.uint8)
  targets = np.zeros((3, 4, 4, 1), np.uint8)
  batch = {"image": np.full((8, 4, 4, 1), 100, np.uint8),
           "label": np.arange(8)}
  always = entangled.EntangledConfig(clean_per_watermark_batch=0.0)
  marked = entangled.watermark_batch_fn(key, triggers, targets, always,
                                        lambda x, k: x)(
                                            batch, jax.random.key(0))
  np.testing.assert_array_equal(marked["label"], np.full(8, 7))
  np.testing.assert_array_equal(marked["snnl_label"], [1] * 4 + [0] * 4)
  np.testing.assert_array_equal(marked["snnl_weight"], np.ones(8))
  np.testing.assert_array_equal(marked["image"][:4], 1.0)
  np.testing.assert_array_equal(marked["image"][4:], 0.0)
  # r = 1: about half the steps are watermark batches, the rest clean.
  batch_fn = entangled.watermark_batch_fn(
      key, triggers, targets, entangled.EntangledConfig(), lambda x, k: x)
  weights = [float(batch_fn(batch, jax.random.key(i))["snnl_weight"][0])
             for i in range(40)]
  assert 10 < sum(weights) < 30
  clean = batch_fn(batch, jax.random.key(weights.index(0.0)))
  np.testing.assert_array_equal(clean["label"], batch["label"])
  np.testing.assert_allclose(clean["image"], 100 / 255)


def test_the_loss_subtracts_the_snnl_on_watermark_batches_only():
  config = entangled.EntangledConfig(factor=2.0)
  loss_fn = entangled.ewe_loss(config)
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
  features = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
  labels = jnp.asarray([0, 1, 2, 0, 1, 2])
  snnl_labels = jnp.asarray([1, 1, 1, 0, 0, 0])
  plain = float(loss_fn(logits, {"label": labels, "snnl_label": snnl_labels,
                                 "snnl_weight": jnp.zeros(6)},
                        {"features": features}))
  marked = float(loss_fn(logits, {"label": labels, "snnl_label": snnl_labels,
                                  "snnl_weight": jnp.ones(6)},
                         {"features": features}))
  snnl = float(entangled.snnl(features, snnl_labels, 1.0))
  assert marked == pytest.approx(plain - 2.0 * snnl, rel=1e-5)


@pytest.fixture(scope="module")
def digits():
  registry.register(MODEL, tiny.Mlp)
  config = train_configs.base_config("digits")
  config.model = MODEL
  config.model_kwargs = config.model_kwargs.__class__({"width": 32})
  config.train.num_epochs = 15
  config.train.log_every_steps = 4  # see tests/watermark/test_embedding.py
  train, test = jaxwm_data.load_splits("digits", None)
  return config, train, test


def test_embedding_plants_the_watermark_a_plain_model_lacks(digits):
  config, train, test = digits
  base = recipe.train_model(config, train, stream=1)
  ewe = entangled.EntangledConfig(num_epochs=8, learning_rate=0.05,
                                  factor=1.0, patch_size=2)
  marked, key = entangled.embed(config, train, base, ewe, stream=1)
  queries = entangled.query_images(key, test, 100)

  def success(model):
    return entangled.watermark_success(model.predict, queries,
                                       key.target_class).mean()

  assert success(marked) > success(base) + 0.5
  assert marked.evaluate(test)["accuracy"] > 0.7
  test_result = entangled.verify(marked.predict, base.predict, key, queries)
  assert test_result.p_value < 0.01 and test_result.delta_p > 0.5
  unmarked = entangled.verify(base.predict, base.predict, key, queries)
  assert unmarked.p_value == 1.0
