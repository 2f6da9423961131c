"""White-box gradient-comparison and gradient-sign features, black-box
probability-difference features."""

import jax
import numpy as np
import pytest

from jaxwm.train import losses
from jaxwm.watermark.move import meta_features


def test_reduction_drops_pools_or_keeps_each_kernel():
  rng = np.random.default_rng(0)
  bias = rng.normal(size=(4,))
  conv = rng.normal(size=(3, 3, 2, 4))
  big_conv = rng.normal(size=(3, 3, 50, 101))
  dense = rng.normal(size=(6, 5))
  big_dense = rng.normal(size=(100, 51))
  reduce = meta_features.reduce_gradient
  assert reduce(bias) is None
  assert reduce(big_conv) is None
  np.testing.assert_allclose(reduce(conv), conv.max(axis=(0, 1)).ravel())
  np.testing.assert_allclose(reduce(dense), dense.ravel())
  np.testing.assert_allclose(reduce(big_dense), big_dense.max(axis=0))
  tree = {"a": {"bias": bias, "kernel": conv}, "b": {"kernel": dense}}
  assert meta_features.reduce_gradients(tree).shape == (8 + 30,)


def _reference_reduction(gradient, threshold):
  """The module docstring's rules, written out again in NumPy."""
  gradient = np.asarray(gradient)
  if gradient.ndim == 1:
    return None
  fan = gradient.shape[-2] * gradient.shape[-1]
  if gradient.ndim == 4:
    return None if fan > threshold else gradient.max(axis=(0, 1)).ravel()
  return gradient.max(axis=0) if fan > threshold else gradient.ravel()


def _loss_gradient(model, variables):
  """(float image [H, W, C], label) -> grad_w L, one sample at a time."""
  variables = dict(variables)
  params = variables.pop("params")

  @jax.jit
  def gradient(image, label):
    def loss(p):
      logits = model.apply({"params": p, **variables}, image[None],
                           train=False)
      return losses.cross_entropy(logits, label[None])[0]
    return jax.tree_util.tree_leaves(jax.grad(loss)(params))

  return gradient


def test_per_sample_sign_gradients_match_a_loop(digits, victim):
  images = digits[1].images[:5]
  labels = digits[1].labels[:5]
  threshold = 200  # the width-8 cnn then pools its dense kernel
  features = meta_features.gradient_sign_features(
      victim.model, victim.variables, images, labels,
      pool_threshold=threshold, batch_size=4)  # 5 = 4 + a padded batch
  gradient = _loss_gradient(victim.model, victim.variables)
  assert features.dtype == np.int8

  for row in range(len(images)):  # one sample at a time
    parts = [_reference_reduction(g, threshold) for g in gradient(
        images[row].astype(np.float32) / 255.0, labels[row])]
    reference = np.concatenate([p for p in parts if p is not None])
    assert features.shape == (5, reference.size)
    # Signs agree wherever the derivative is not rounding noise.
    clear = np.abs(reference) > 1e-6 * np.abs(reference).max()
    np.testing.assert_array_equal(features[row][clear],
                                  np.sign(reference[clear]))
    assert np.mean(features[row] == np.sign(reference)) > 0.999


def test_gradient_comparisons_match_a_loop_over_single_samples(marked,
                                                               victim):
  key = marked[1]
  transformed, benign = key.pairs(key.verification_positions[:5])
  features = meta_features.gradient_comparison_features(
      victim.model, victim.variables, transformed.images, benign,
      transformed.labels, batch_size=4)  # 5 = 4 + a padded batch
  gradient = _loss_gradient(victim.model, victim.variables)
  assert features.dtype == np.float32
  assert features.shape == (5, 8)  # Conv_0, Conv_1, Dense_0, head: 2 x 4
  for row in range(5):
    def kernels(image):
      return [np.asarray(g).ravel() for g in gradient(
          image.astype(np.float32) / 255.0, transformed.labels[row])
              if g.ndim >= 2]
    pairs = list(zip(kernels(transformed.images[row]), kernels(benign[row])))
    log_ratios = [np.log(np.linalg.norm(a) / np.linalg.norm(b))
                  for a, b in pairs]
    cosines = [a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
               for a, b in pairs]
    np.testing.assert_allclose(features[row], log_ratios + cosines,
                               atol=1e-4)
  assert np.all(np.abs(features[:, 4:]) <= 1 + 1e-6)


def test_gradient_comparisons_stay_finite_where_a_gradient_vanishes():
  # A loss saturated to exactly 0 has a zero gradient; so may one kernel.
  kernel = np.full((3, 3, 1, 4), 1e-3, np.float32)
  dense = np.arange(12, dtype=np.float32).reshape(4, 3)
  zero = {"conv": np.zeros_like(kernel), "dense": np.zeros_like(dense),
          "bias": np.ones(3, np.float32)}
  some = {"conv": kernel, "dense": dense, "bias": np.ones(3, np.float32)}
  np.testing.assert_array_equal(meta_features.compare_kernels(zero, zero),
                                [0.0, 0.0, 0.0, 0.0])
  mixed = np.asarray(meta_features.compare_kernels(zero, some))
  assert np.all(np.isfinite(mixed))
  np.testing.assert_array_equal(mixed[2:], [0.0, 0.0])  # cosines
  assert np.all(mixed[:2] < -50)  # log of the floor minus log of a norm
  np.testing.assert_allclose(meta_features.compare_kernels(some, some),
                             [0.0, 0.0, 1.0, 1.0], atol=1e-6)


def _permute_hidden_units(variables, seed=0):
  """The width-8 cnn with its first conv's channels and its dense layer's
  units in another order: the same function, other weights."""
  rng = np.random.default_rng(seed)
  params = jax.tree_util.tree_map(np.array, dict(variables["params"]))
  stats = jax.tree_util.tree_map(np.array, dict(variables["batch_stats"]))
  channels = rng.permutation(params["Conv_0"]["kernel"].shape[-1])
  params["Conv_0"]["kernel"] = params["Conv_0"]["kernel"][..., channels]
  for block in (params["BatchNorm_0"], stats["BatchNorm_0"]):
    for name in block:
      block[name] = block[name][channels]
  params["Conv_1"]["kernel"] = params["Conv_1"]["kernel"][:, :, channels]
  units = rng.permutation(params["Dense_0"]["kernel"].shape[-1])
  params["Dense_0"]["kernel"] = params["Dense_0"]["kernel"][:, units]
  params["Dense_0"]["bias"] = params["Dense_0"]["bias"][units]
  params["head"]["kernel"] = params["head"]["kernel"][units]
  return {"params": params, "batch_stats": stats}


def test_gradient_comparisons_do_not_depend_on_the_order_of_hidden_units(
    marked, victim):
  key = marked[1]
  transformed, benign = key.pairs(key.verification_positions[:8])
  permuted = _permute_hidden_units(victim.variables)
  images = transformed.images.astype(np.float32) / 255.0
  np.testing.assert_allclose(
      victim.model.apply(permuted, images),
      victim.model.apply(victim.variables, images), atol=1e-4)

  def comparisons(variables):
    return meta_features.gradient_comparison_features(
        victim.model, variables, transformed.images, benign,
        transformed.labels, batch_size=4)  # shapes compiled above

  np.testing.assert_allclose(comparisons(permuted),
                             comparisons(victim.variables), atol=1e-4)

  def signs(variables):
    return meta_features.gradient_sign_features(
        victim.model, variables, transformed.images, transformed.labels,
        pool_threshold=200, batch_size=4)

  # The paper's sign features follow the units: the same function gives
  # other features.
  assert np.mean(signs(permuted) != signs(victim.variables)) > 0.1


def test_gradient_comparisons_refuse_unpaired_images(marked, victim):
  key = marked[1]
  transformed, benign = key.pairs(key.verification_positions[:4])
  with pytest.raises(ValueError, match="paired"):
    meta_features.gradient_comparison_features(
        victim.model, victim.variables, transformed.images, benign[:3],
        transformed.labels)


def test_augmented_views_are_the_papers_five():
  image = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1)
  views = meta_features.augmented_views(image, shift=1)
  assert len(views) == len(meta_features.AUGMENTATIONS) == 5
  plane = image[0, :, :, 0]
  np.testing.assert_array_equal(views[0][0, :, :, 0], plane)
  np.testing.assert_array_equal(views[1][0, :, :, 0], plane[:, ::-1])
  down_right, right, down = (v[0, :, :, 0] for v in views[2:])
  np.testing.assert_array_equal(down_right[1:, 1:], plane[:-1, :-1])
  np.testing.assert_array_equal(right[:, 1:], plane[:, :-1])
  np.testing.assert_array_equal(down[1:], plane[:-1])
  assert down_right[0].sum() == down_right[:, 0].sum() == 0
  assert right[:, 0].sum() == down[0].sum() == 0
  with pytest.raises(ValueError, match="shift"):
    meta_features.augmented_views(image, shift=4)


def test_probability_differences_are_concatenated_per_augmentation():
  rng = np.random.default_rng(1)
  weights = rng.normal(size=(16, 3))
  queried = []

  def predict_proba(images):
    queried.append(len(images))
    logits = images.reshape(len(images), -1) @ weights
    return np.asarray(jax.nn.softmax(logits))

  transformed = rng.integers(0, 256, (6, 4, 4, 1), dtype=np.uint8)
  benign = rng.integers(0, 256, (6, 4, 4, 1), dtype=np.uint8)
  features = meta_features.probability_difference_features(
      predict_proba, transformed, benign, 3, shift=1)
  assert features.shape == (6, 5 * 3) and features.dtype == np.float32
  assert sum(queried) == meta_features.QUERIES_PER_IMAGE * 6
  views = zip(meta_features.augmented_views(transformed, 1),
              meta_features.augmented_views(benign, 1))
  for index, (moved, moved_benign) in enumerate(views):
    expected = (predict_proba(moved / 255.0) -
                predict_proba(moved_benign / 255.0))
    np.testing.assert_allclose(features[:, 3 * index:3 * index + 3],
                               expected, atol=1e-6)
