"""WILD's loss, erasing and removal on digits; NAD's attention loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm import data as jaxwm_data
from jaxwm.defenses import fine_tuning
from jaxwm.defenses import nad
from jaxwm.defenses import repair_engine
from jaxwm.defenses import wild
from jaxwm.train import recipe
from jaxwm.watermark import trigger_watermarks as tw

import tiny

# Two clean rows, then their erased copies; K = 3.
LOGITS = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.3],
                   [1.0, 1.0, 0.0], [-0.5, 2.0, 0.1]], np.float32)
LABELS = np.array([0, 1, 0, 1])


def _softmax(x):
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def _ce(logits, labels):
  return -np.log(_softmax(logits)[np.arange(len(labels)), labels]).mean()


def _kl(p, q):
  return np.sum(p * np.log(p / q), axis=-1)


@pytest.mark.parametrize("divergence", wild.DIVERGENCES)
def test_wild_loss_is_the_stated_formula(divergence):
  weight = 0.7
  got = wild.wild_loss(jnp.asarray(LOGITS), {"label": jnp.asarray(LABELS)},
                       {}, weight=weight, divergence=divergence,
                       layer=wild.LOGITS)
  p, q = _softmax(LOGITS[:2].astype(np.float64)), _softmax(
      LOGITS[2:].astype(np.float64))
  if divergence == wild.CROSS_ENTROPY:
    gap = -np.sum(p * np.log(q), axis=-1)
  else:
    m = (p + q) / 2
    gap = _kl(p, m) / 2 + _kl(q, m) / 2
  expected = (_ce(LOGITS[:2], LABELS[:2]) + _ce(LOGITS[2:], LABELS[2:]) +
              weight * gap.mean())
  assert float(got) == pytest.approx(expected, rel=1e-5)


def test_wild_loss_on_a_feature_layer():
  features = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4, 2, 3) / 10
  activations = {"block2": jnp.asarray(features)}
  with_layer = wild.wild_loss(
      jnp.asarray(LOGITS), {"label": jnp.asarray(LABELS)}, activations,
      weight=1.0, divergence=wild.JENSEN_SHANNON, layer="block2")
  without = wild.wild_loss(
      jnp.asarray(LOGITS), {"label": jnp.asarray(LABELS)}, activations,
      weight=0.0, divergence=wild.JENSEN_SHANNON, layer="block2")
  flat = features.reshape(4, -1).astype(np.float64)
  p, q = _softmax(flat[:2]), _softmax(flat[2:])
  m = (p + q) / 2
  gap = (_kl(p, m) / 2 + _kl(q, m) / 2).mean()
  assert float(with_layer - without) == pytest.approx(gap, rel=1e-4)
  with pytest.raises(ValueError, match="'block9' is not an activation"):
    wild.wild_loss(jnp.asarray(LOGITS), {"label": jnp.asarray(LABELS)},
                   activations, weight=1.0, divergence="js", layer="block9")


def test_divergences_vanish_on_equal_views_only():
  same = wild.jensen_shannon_divergence(LOGITS, LOGITS)
  np.testing.assert_allclose(same, 0, atol=1e-6)
  apart = wild.jensen_shannon_divergence(LOGITS, LOGITS[::-1])
  np.testing.assert_allclose(apart, wild.jensen_shannon_divergence(
      LOGITS[::-1], LOGITS), rtol=1e-6)
  assert np.all(apart > 0) and np.all(apart <= np.log(2))
  p = _softmax(LOGITS.astype(np.float64))
  np.testing.assert_allclose(wild.cross_entropy_divergence(LOGITS, LOGITS),
                             -np.sum(p * np.log(p), axis=-1), rtol=1e-5)


def test_wild_settings_are_checked():
  with pytest.raises(ValueError, match="divergence must be"):
    wild.WildConfig(divergence="kl")
  with pytest.raises(ValueError, match="weight"):
    wild.WildConfig(weight=-1.0)
  with pytest.raises(ValueError, match="learning_rate"):
    wild.WildConfig(learning_rate=0.0)
  with pytest.raises(ValueError, match="schedule must be one of"):
    wild.WildConfig(schedule="linear")
  for bad in ("black", 1.5, -0.1, "nan"):
    with pytest.raises(ValueError, match="erasing_value must be"):
      wild.WildConfig(erasing_value=bad)
  # Random Erasing's other settings are refused when the settings are
  # made too, not at the first training step.
  with pytest.raises(ValueError, match="scale"):
    wild.WildConfig(erasing_scale=(0.5, 0.2))
  with pytest.raises(ValueError, match="ratio"):
    wild.WildConfig(erasing_ratio=(0.0, 3.3))
  with pytest.raises(ValueError, match="probability"):
    wild.WildConfig(erasing_probability=1.5)


def test_erasing_value_from_the_command_line_is_a_number():
  # A ConfigDict whose default is "random" turns a command-line 0.5 into
  # the string "0.5".
  assert wild.WildConfig(erasing_value="0.5").erasing_value == 0.5
  assert wild.WildConfig(erasing_value="random").erasing_value == "random"
  assert wild.WildConfig(erasing_value=0).erasing_value == 0.0


def test_erasing_keeps_the_shape_and_erases_one_rectangle_in_range():
  settings = wild.WildConfig(erasing_value=0.0)
  images = jnp.ones((64, 28, 28, 1))
  erased = np.asarray(jax.jit(settings.erase)(images, jax.random.key(0)))
  assert erased.shape == images.shape
  area = 28 * 28
  low, high = settings.erasing_scale
  for mask in erased[..., 0] == 0:
    h, w = mask.any(axis=1).sum(), mask.any(axis=0).sum()
    assert mask.sum() == h * w > 0  # one filled rectangle, in every image
    # Sides are rounded to whole pixels: allow half a pixel each way.
    assert (h - 0.5) * (w - 0.5) <= high * area
    assert (h + 0.5) * (w + 0.5) >= low * area


def test_erased_pairs_follow_the_originals():
  settings = wild.WildConfig(erasing_value=0.0)
  batch_fn = repair_engine.augmenting_batch_fn(
      repair_engine.no_transform, wild.erased_pairs(settings))
  images = np.full((4, 8, 8, 1), 255, np.uint8)
  out = jax.jit(batch_fn)({"image": images,
                           "label": jnp.arange(4, dtype=jnp.int32)},
                          jax.random.key(1))
  pairs, labels = np.asarray(out["image"]), np.asarray(out["label"])
  assert pairs.shape == (8, 8, 8, 1) and pairs.dtype == np.float32
  np.testing.assert_array_equal(labels, [0, 1, 2, 3, 0, 1, 2, 3])
  np.testing.assert_array_equal(pairs[:4], 1.0)
  assert np.all((pairs[4:] == 0).any(axis=(1, 2, 3)))


def test_attention_map_and_loss():
  activation = np.zeros((2, 2, 2, 3), np.float32)
  activation[0, 0, 0] = [1.0, -1.0, 0.0]  # sum of squares 2
  activation[0, 1, 1] = [2.0, 0.0, 0.0]   # 4
  activation[1] = 1.0
  maps = np.asarray(nad.attention_map(jnp.asarray(activation), 2.0))
  np.testing.assert_allclose(maps[0], np.array([2, 0, 0, 4]) / np.sqrt(20),
                             rtol=1e-5)
  np.testing.assert_allclose(maps[1], 0.5, rtol=1e-5)
  loss = nad.attention_loss(jnp.asarray(activation), jnp.asarray(maps[::-1]),
                            2.0)
  assert float(loss) == pytest.approx(np.mean((maps - maps[::-1])**2),
                                      rel=1e-5)
  with pytest.raises(ValueError, match="convolutional blocks"):
    nad.attention_map(jnp.ones((2, 16)), 2.0)


def test_nad_loss_weights_each_block():
  student = jnp.asarray(np.random.default_rng(0).normal(size=(2, 2, 2, 3)),
                        jnp.float32)
  labels = jnp.array([0, 2])
  teacher = nad.attention_map(student[::-1], 2.0)
  batch = {"label": labels, nad.TEACHER_PREFIX + "block1": teacher}
  logits = jnp.asarray(LOGITS[:2])
  got = nad.nad_loss(logits, batch, {"block1": student},
                     betas=(("block1", 500.0),), power=2.0)
  expected = _ce(LOGITS[:2], np.array([0, 2])) + 500 * float(
      nad.attention_loss(student, teacher, 2.0))
  assert float(got) == pytest.approx(expected, rel=1e-5)


_config = tiny.digits_cnn_config


def test_wild_removes_more_of_a_content_watermark_than_fine_tuning():
  train, test = recipe.load_datasets(_config(6))
  key = tw.content_watermark(train, 0, n=30, text="T", margin=0, seed=1)
  marked = tw.embed(_config(6), train, key, k=4)
  clean = jaxwm_data.stratified_subset(train, 0.1, 0)  # 144 images
  others = test.images[test.labels != key.target]
  assert tw.watermark_accuracy(marked, key, others) >= 0.9
  # The tiny model diverges at the default rate (0.05, set for the
  # Fashion-MNIST CNN); both repairs average the last 4 epochs.
  settings = wild.WildConfig(num_epochs=5, learning_rate=0.03)
  removed = wild.repair(_config(6), marked, clean, settings)
  tuned = fine_tuning.repair(
      _config(6), marked, clean,
      fine_tuning.FineTuneConfig(
          fine_tuning.ALL, settings.learning_rate, settings.num_epochs,
          average_epochs=settings.average_epochs))
  after_wild = tw.watermark_accuracy(removed, key, others)
  after_tuning = tw.watermark_accuracy(tuned, key, others)
  assert after_wild < after_tuning - 0.1
  assert removed.evaluate(test)["accuracy"] > 0.75
