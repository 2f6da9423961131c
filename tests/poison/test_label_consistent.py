"""Tests of the Label-Consistent watermark: its PGD and its marking.

Every PGD on the small CNN uses the paper's settings and batches of
``BATCH`` images, so one compiled PGD serves all tests.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.data.dataset import Dataset
from jaxwm.models import get_model
from jaxwm.poison import label_consistent
from jaxwm.poison.label_consistent import LabelConsistentConfig


class Linear(nn.Module):
  """Logits x . W, W [H * W * C, K]: a model whose PGD is worked out by hand
  (and that compiles in a moment)."""

  num_classes: int = 4

  @nn.compact
  def __call__(self, x, train=False):
    kernel = self.param("kernel", nn.initializers.normal(1.0),
                        (x[0].size, self.num_classes))
    return x.reshape(x.shape[0], -1) @ kernel


BATCH = 32
PAPER = dict(epsilon=16 / 255, step_size=1.5 / 255, steps=30)


def _dataset(n=100, num_classes=4, shape=(8, 8, 1)):
  rng = np.random.default_rng(0)
  return Dataset(rng.integers(0, 256, (n,) + shape, dtype=np.uint8),
                 np.arange(n) % num_classes, num_classes, name="toy")


def _init(model, shape=(8, 8, 1)):
  init = jax.jit(model.init)  # op-by-op initialisation is slow on a CPU
  return model, init(jax.random.key(0), jnp.zeros((1,) + shape))


def test_pgd_on_a_linear_model_moves_every_pixel_by_epsilon_along_w():
  # Logits (0, w . x): CE of label 0 is softplus(w . x), its gradient
  # sigmoid(w . x) w, so each step adds step_size * sign(w) and the
  # projection stops at epsilon.
  w = np.where(np.arange(16) % 3 == 0, 1.0, -0.5)
  w[1] = 0.0
  kernel = np.stack([np.zeros(16), w], axis=1)
  images = jnp.full((2, 4, 4, 1), 0.5).at[1, 0, 0, 0].set(0.98)
  pgd = label_consistent.make_pgd(Linear(2), epsilon=0.1, step_size=0.03,
                                  steps=5)
  adversarial = np.asarray(pgd({"params": {"kernel": kernel}}, images,
                               jnp.zeros(2, jnp.int32)))
  expected = np.clip(np.asarray(images) + 0.1 * np.sign(w).reshape(4, 4, 1),
                     0.0, 1.0)
  np.testing.assert_allclose(adversarial, expected, atol=1e-6)
  assert adversarial[1, 0, 0, 0] == pytest.approx(1.0)  # clipped to the box
  assert adversarial[0, 0, 1, 0] == pytest.approx(0.5)  # zero gradient


def test_pgd_raises_the_surrogate_loss_within_the_ball():
  model, variables = _init(get_model("cnn", 4, width=4, dense_width=8))
  dataset = _dataset(n=BATCH)
  images = jnp.asarray(dataset.float_images())
  labels = jnp.asarray(dataset.labels)
  pgd = label_consistent.make_pgd(model, **PAPER)
  adversarial = pgd(variables, images, labels)

  def loss(x):
    logits = model.apply(variables, x)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits),
                                         labels[:, None], axis=1))

  assert float(loss(adversarial)) > float(loss(images)) + 0.05
  change = np.abs(np.asarray(adversarial) - np.asarray(images))
  assert change.max() <= 16 / 255 + 1e-6 and change.max() > 15 / 255
  assert float(adversarial.min()) >= 0.0 and float(adversarial.max()) <= 1.0


def test_zero_steps_leave_the_images_unchanged():
  model, variables = _init(Linear())
  images = jnp.asarray(_dataset(n=4).float_images())
  pgd = label_consistent.make_pgd(model, 0.1, 0.01, 0)
  np.testing.assert_array_equal(pgd(variables, images, jnp.zeros(4, int)),
                                images)


def test_perturb_pads_the_last_batch_and_matches_single_calls():
  model, variables = _init(Linear())
  dataset = _dataset(n=40)
  pgd = label_consistent.make_pgd(model, **PAPER)
  assert label_consistent.make_pgd(model, **PAPER) is pgd  # cached
  batched = label_consistent.perturb(pgd, variables, dataset.images,
                                     dataset.labels, batch_size=BATCH)
  images = jnp.asarray(dataset.float_images())
  labels = jnp.asarray(dataset.labels)
  first = pgd(variables, images[:BATCH], labels[:BATCH])
  # PGD acts on each image alone: the padding rows change nothing.
  last = pgd(variables, jnp.concatenate([images[BATCH:], images[:24]]),
             jnp.concatenate([labels[BATCH:], labels[:24]]))
  assert batched.shape == (40, 8, 8, 1)
  assert not np.allclose(batched, dataset.float_images())
  np.testing.assert_allclose(batched[:BATCH], first, atol=1e-6)
  np.testing.assert_allclose(batched[BATCH:], last[:8], atol=1e-6)


def test_mark_poisons_target_class_samples_only_and_keeps_labels():
  dataset = _dataset()
  model, variables = _init(Linear())
  config = LabelConsistentConfig(poison_rate=0.2, target_label=2,
                                 patch_size=2, batch_size=BATCH)
  marked, key = label_consistent.mark(dataset, config, jax.random.key(1),
                                      model, variables)
  poisoned = key.poisoned_indices
  assert poisoned.size == 20
  np.testing.assert_array_equal(dataset.labels[poisoned], 2)
  np.testing.assert_array_equal(marked.labels, dataset.labels)
  rest = np.setdiff1d(np.arange(len(dataset)), poisoned)
  np.testing.assert_array_equal(marked.images[rest], dataset.images[rest])
  # The patch is stamped over the perturbed image; elsewhere the change is
  # the PGD perturbation, at most 16 grey levels.
  np.testing.assert_array_equal(marked.images[poisoned][:, -2:, -2:, 0],
                                np.broadcast_to([[255, 0], [0, 255]],
                                                (20, 2, 2)))
  change = np.abs(marked.images[poisoned][:, :-2].astype(int) -
                  dataset.images[poisoned][:, :-2])
  assert change.max() == 16 and change.mean() > 2
  assert (key.method, key.target_label, key.poison_rate) == (
      "label_consistent", 2, 0.2)
  assert key.source_classes == (0, 1, 2, 3) and key.targeted


def test_mark_accepts_a_dict_and_is_decided_by_the_key():
  dataset = _dataset()
  model, variables = _init(Linear())
  settings = {"poison_rate": 0.1, "batch_size": BATCH}
  first = label_consistent.mark(dataset, settings, jax.random.key(3), model,
                                variables)
  second = label_consistent.mark(dataset, settings, jax.random.key(3), model,
                                 variables)
  np.testing.assert_array_equal(first[0].images, second[0].images)
  other = label_consistent.mark(dataset, settings, jax.random.key(4), model,
                                variables)
  assert not np.array_equal(first[1].poisoned_indices,
                            other[1].poisoned_indices)


def test_mark_rejects_more_poison_than_the_target_class_holds():
  model, variables = _init(Linear())
  with pytest.raises(ValueError, match=r"only poison the 25 samples.*0\.25"):
    label_consistent.mark(_dataset(), {"poison_rate": 0.3}, jax.random.key(0),
                          model, variables)
  with pytest.raises(ValueError, match="target_label 7"):
    label_consistent.mark(_dataset(), {"target_label": 7}, jax.random.key(0),
                          model, variables)


@pytest.mark.parametrize("settings, message", [
    ({"epsilon": 16}, "epsilon must be in"),
    ({"step_size": -0.1}, "step_size must be in"),
    ({"steps": -1}, "steps must be"),
    ({"poison_rate": 0.0}, "poison_rate"),
])
def test_config_rejects_bad_values(settings, message):
  with pytest.raises(ValueError, match=message):
    LabelConsistentConfig(**settings)
