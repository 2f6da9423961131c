"""The crafting loop: descent, constraints, sharding, restarts, rounds, resume."""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm import identity
from jaxwm.alignment import crafting, objective
from jaxwm.alignment.regularizers import Regularizers
from jaxwm.data.augment import AugmentConfig
from jaxwm.models import get_model
from jaxwm.train import make_mesh
from jaxwm.train.checkpoint import Checkpointer

EPS = 8 / 255
AUGMENT = AugmentConfig(shift=1, flip=True)
# Most tests craft on one device without augmentation and so share one
# compiled step; the sharding and augmentation tests share another two.
ONE_DEVICE = make_mesh(jax.devices()[:1])


@functools.lru_cache(maxsize=None)
def _setup(n=32):
  """A tiny CNN and images that include saturated pixels (0 and 255)."""
  model = get_model("cnn", 4, width=4, dense_width=16)
  variables = dict(jax.jit(model.init, static_argnames="train")(
      jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)), train=False))
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)
  images[:, 0] = 0
  images[:, -1] = 255
  labels = (np.arange(n) % 4).astype(np.int32)
  return model, variables, images, labels


def _target(model, images, labels, mesh=ONE_DEVICE):
  return objective.make_target(model, images, labels,
                               objective.reverse_cross_entropy, batch_size=16,
                               mesh=mesh)


def _config(**kw):
  defaults = dict(epsilon=EPS, steps=6, restarts=1, batch_size=16,
                  learning_rate=0.03, augment=AugmentConfig(),
                  checkpoint_every=1, log_every=100)
  return crafting.CraftConfig(**{**defaults, **kw})


def test_every_step_keeps_delta_in_the_ball_and_pixels_in_the_box():
  model, variables, images, labels = _setup()
  mesh = make_mesh()
  target = _target(model, images, labels, mesh)(
      variables["params"], {"batch_stats": variables["batch_stats"]})
  # A learning rate far beyond eps: without projection delta would leave.
  config = _config(learning_rate=0.5, augment=AUGMENT)
  step = crafting.make_craft_step(model, config, mesh)
  spread = objective.stacked_batch_sharding(mesh)
  batched = jax.device_put(
      (objective.pad_to_batches(images, 16),
       objective.pad_to_batches(labels, 16),
       objective.batch_weights(len(images), 16)), spread)
  delta = jax.device_put(jnp.zeros(batched[0].shape), spread)
  carry = (delta, crafting.initial_optimizer_state(delta))
  clean = batched[0].astype(np.float32) / 255
  for count in range(1, 4):
    for index in range(2):
      carry, value = step(carry, jnp.int32(index), jnp.float32(0.5),
                          variables, target, *batched,
                          jax.random.PRNGKey(count))
      delta = np.asarray(carry[0])
      assert np.isfinite(float(value))
      assert np.abs(delta).max() <= EPS + 1e-7
      poisoned = np.asarray(clean) + delta
      assert poisoned.min() >= -1e-7 and poisoned.max() <= 1 + 1e-7
  # The steps moved delta to the corners of the ball, where pixels allow.
  assert np.abs(delta[:, :, 2:-2]).max() == pytest.approx(EPS, rel=1e-6)
  # Saturated rows can only move inwards.
  assert delta[:, :, 0].min() >= 0 and delta[:, :, -1].max() <= 0
  # Each batch took one Adam step per crafting step.
  counts = [leaf for leaf in jax.tree.leaves(carry[1]) if leaf.ndim == 1]
  assert counts and all(np.array_equal(c, [3, 3]) for c in counts)


def _hand_written_signed_adam(gradients, learning_rates):
  """The crafting loop's update as it was written by hand before Optax, in
  float64: Adam's moments of sign(g), bias-corrected with the 1-based step
  t, eps outside the square root; returns delta after every step."""
  mu = nu = delta = np.zeros_like(gradients[0], np.float64)
  trajectory = []
  for t, (gradient, learning_rate) in enumerate(
      zip(gradients, learning_rates), start=1):
    signs = np.sign(gradient)
    mu = 0.9 * mu + 0.1 * signs
    nu = 0.999 * nu + 0.001 * signs ** 2
    delta = delta - learning_rate * (mu / (1 - 0.9 ** t)) / (
        np.sqrt(nu / (1 - 0.999 ** t)) + 1e-8)
    trajectory.append(delta)
  return trajectory


def _signed_adam_step(gradient, state, delta, learning_rate):
  updates, state = crafting.signed_adam(learning_rate).update(gradient, state)
  return delta + updates, state


def test_optax_signed_adam_follows_the_hand_written_trajectory():
  config = _config(steps=8, learning_rate=0.03, milestones=(0.25, 0.5))
  schedule = config.schedule()
  rates = [float(schedule(step)) for step in range(config.steps)]
  assert rates[0] == pytest.approx(0.03) and rates[-1] == pytest.approx(3e-4)
  rng = np.random.default_rng(0)
  # Gradients with exact zeros: their sign, and so their update, is 0.
  gradients = [np.where(rng.random((2, 5, 3)) < 0.2, 0.0,
                        rng.normal(size=(2, 5, 3))).astype(np.float32)
               for _ in range(config.steps)]
  delta = jnp.zeros((2, 5, 3), jnp.float32)
  state = crafting.initial_optimizer_state(delta)
  # One state per batch (axis 0), as the crafting loop keeps them.
  step = jax.jit(jax.vmap(_signed_adam_step, in_axes=(0, 0, 0, None)))
  expected = _hand_written_signed_adam(gradients, rates)
  for gradient, rate, want in zip(gradients, rates, expected):
    delta, state = step(jnp.asarray(gradient), state, delta, rate)
    np.testing.assert_allclose(delta, want, rtol=1e-5, atol=1e-7)


def test_crafting_lowers_the_objective():
  model, variables, images, labels = _setup()
  objectives = []
  result = crafting.craft(
      model, variables, images, labels, _target(model, images, labels),
      _config(steps=8), jax.random.PRNGKey(1), mesh=ONE_DEVICE,
      on_step=lambda restart, step, value: objectives.append(value))
  assert len(objectives) == 8
  assert objectives[-1] < objectives[0] - 0.05
  assert result.loss == pytest.approx(objectives[-1])
  assert result.delta.shape == images.shape
  assert np.abs(result.delta).max() <= EPS + 1e-7


def test_gradient_norm_objective_lowers_the_gradient_norm():
  model, variables, images, labels = _setup()
  objectives = []
  crafting.craft(model, variables, images, labels, None,
                 _config(steps=5, objective="gradient_norm"),
                 jax.random.PRNGKey(1), mesh=ONE_DEVICE,
                 on_step=lambda r, s, value: objectives.append(value))
  assert objectives[-1] < objectives[0]


def test_the_suites_devices_give_the_poisons_of_one():
  model, variables, images, labels = _setup()
  results = []
  for devices in (1, jax.device_count()):
    mesh = make_mesh(jax.devices()[:devices])
    results.append(crafting.craft(
        model, variables, images, labels,
        _target(model, images, labels, mesh),
        _config(steps=3, augment=AUGMENT),
        jax.random.PRNGKey(2), mesh=mesh))
  one, sharded = results
  assert one.loss == pytest.approx(sharded.loss, rel=1e-5)
  # Signed steps are equal unless a gradient entry is at rounding level.
  assert np.mean(one.delta == sharded.delta) > 0.999
  np.testing.assert_allclose(one.delta, sharded.delta, atol=0.05 * EPS)


def test_retraining_rounds_replace_the_surrogate():
  model, variables, images, labels = _setup()
  calls = []
  other = dict(jax.jit(model.init, static_argnames="train")(
      jax.random.PRNGKey(9), jnp.zeros((1, 8, 8, 1)), train=False))

  def retrain(restart, round_, poisoned):
    calls.append((restart, round_))
    assert poisoned.dtype == np.uint8 and poisoned.shape == images.shape
    moved = np.abs(poisoned.astype(int) - images.astype(int))
    assert moved.max() <= 8 and moved.max() > 0
    return other

  objectives = []
  crafting.craft(model, variables, images, labels,
                 _target(model, images, labels),
                 _config(steps=5, retrain_every=2), jax.random.PRNGKey(4),
                 retrain=retrain, mesh=ONE_DEVICE,
                 on_step=lambda r, s, value: objectives.append(value))
  assert calls == [(0, 1), (0, 2)]
  with pytest.raises(ValueError, match="retrain function"):
    crafting.craft(model, variables, images, labels, None,
                   _config(objective="gradient_norm", retrain_every=2),
                   jax.random.PRNGKey(4))


def test_an_ensemble_aligns_against_its_members_in_turn(tmp_path):
  model, variables, images, labels = _setup()
  other = dict(jax.jit(model.init, static_argnames="train")(
      jax.random.PRNGKey(9), jnp.zeros((1, 8, 8, 1)), train=False))
  target = _target(model, images, labels)
  config = _config(steps=4)
  key = jax.random.PRNGKey(6)

  def run(surrogates, **kw):
    objectives = []
    result = crafting.craft(
        model, surrogates, images, labels, target, config, key,
        mesh=ONE_DEVICE, on_step=lambda r, s, value: objectives.append(value),
        **kw)
    return result, objectives

  alone, alone_objectives = run(variables)
  # An ensemble of one surrogate twice is that surrogate.
  twice, _ = run([variables, variables])
  np.testing.assert_array_equal(twice.delta, alone.delta)
  assert twice.loss == alone.loss
  # Step 0 aligns at the first member, step 1 at the second.
  mixed, mixed_objectives = run([variables, other], workdir=str(tmp_path))
  other_first, other_objectives = run([other, variables])
  assert mixed_objectives[0] == pytest.approx(alone_objectives[0])
  assert other_objectives[0] != pytest.approx(alone_objectives[0])
  assert mixed_objectives[1] != pytest.approx(alone_objectives[1])
  assert not np.array_equal(mixed.delta, alone.delta)
  assert not np.array_equal(mixed.delta, other_first.delta)
  # A crafting run keeps its ensemble: another one is refused by name.
  with pytest.raises(identity.StaleRunError,
                     match=r"surrogates: \[.*\(on disk\) != "):
    crafting.craft(model, variables, images, labels, target, config, key,
                   workdir=str(tmp_path), mesh=ONE_DEVICE)
  with pytest.raises(ValueError, match="no bi-level rounds"):
    crafting.craft(model, [variables, other], images, labels, target,
                   _config(retrain_every=2), key, retrain=lambda *a: other)


def _poisoned_with_nan(variables):
  """``variables`` with one NaN weight, as a diverged surrogate has."""
  leaves, tree = jax.tree.flatten(variables["params"])
  leaves[0] = leaves[0].at[(0,) * leaves[0].ndim].set(jnp.nan)
  return {**variables, "params": jax.tree.unflatten(tree, leaves)}


def test_a_non_finite_target_gradient_stops_crafting():
  model, variables, images, labels = _setup()
  target = _target(model, images, labels)
  with pytest.raises(crafting.NonFiniteCraftingError,
                     match=r"trial 1/2: the target gradient for step 1/4 "
                     r"\(surrogate round 0, ensemble member 0\)"):
    crafting.craft(model, _poisoned_with_nan(variables), images, labels,
                   target, _config(steps=4, restarts=2),
                   jax.random.PRNGKey(0), mesh=ONE_DEVICE)


@pytest.mark.parametrize("log_every, checkpoint_every, found", [
    (1, 100, 3), (100, 2, 4), (100, 100, 5)])
def test_a_non_finite_step_stops_crafting_and_names_the_first_one(
    tmp_path, log_every, checkpoint_every, found):
  """The third step's surrogate is broken; the loop finds it where it next
  waits for the device: a progress line, a checkpoint or the trial's end."""
  model, variables, images, labels = _setup()
  members = [variables, variables, _poisoned_with_nan(variables)]
  with pytest.raises(crafting.NonFiniteCraftingError,
                     match=rf"trial 1/1: the objective or the perturbations "
                     rf"became NaN or inf at step 3/5 \(found at step "
                     rf"{found}\)"):
    crafting.craft(model, members, images, labels, None,
                   _config(steps=5, objective="gradient_norm",
                           log_every=log_every,
                           checkpoint_every=checkpoint_every),
                   jax.random.PRNGKey(0), mesh=ONE_DEVICE,
                   workdir=str(tmp_path))
  # No checkpoint was written after the bad step.
  checkpointer = Checkpointer(str(tmp_path))
  latest = checkpointer.latest_step()
  checkpointer.close()
  assert latest == (2 if checkpoint_every == 2 else None)


class _Killed(Exception):
  pass


def test_restarts_keep_the_best_and_a_killed_run_resumes(tmp_path):
  model, variables, images, labels = _setup()
  config = _config(steps=3, restarts=2)
  target = _target(model, images, labels)
  key = jax.random.PRNGKey(5)
  finals = {}
  reference = crafting.craft(
      model, variables, images, labels, target, config, key, mesh=ONE_DEVICE,
      on_step=lambda restart, step, value: finals.__setitem__(restart, value))
  # The kept trial is the one with the lowest final objective.
  assert sorted(finals) == [0, 1] and finals[0] != finals[1]
  assert reference.loss == pytest.approx(min(finals.values()))

  def kill_at_trial_1_step_2(restart, step, value):
    if (restart, step) == (1, 2):
      raise _Killed()

  with pytest.raises(_Killed):
    crafting.craft(model, variables, images, labels, target, config, key,
                   workdir=str(tmp_path), mesh=ONE_DEVICE,
                   on_step=kill_at_trial_1_step_2)
  resumed_steps = []
  resumed = crafting.craft(
      model, variables, images, labels, target, config, key,
      workdir=str(tmp_path), mesh=ONE_DEVICE,
      on_step=lambda restart, step, value: resumed_steps.append(
          (restart, step)))
  # The checkpoint after trial 1, step 1 was the last one written.
  assert resumed_steps == [(1, 2), (1, 3)]
  np.testing.assert_array_equal(resumed.delta, reference.delta)
  assert resumed.loss == reference.loss
  # A finished run resumes to its result without crafting again.
  again = crafting.craft(model, variables, images, labels, target, config,
                         key, workdir=str(tmp_path), mesh=ONE_DEVICE,
                         on_step=lambda *a: pytest.fail("crafted again"))
  np.testing.assert_array_equal(again.delta, reference.delta)
  # Other samples to perturb, or another target set: refused by name.
  with pytest.raises(identity.StaleRunError,
                     match=r"(?s)images: .*num_poisons: 32 \(on disk\) != 16"):
    crafting.craft(model, variables, images[:16], labels[:16], target,
                   config, key, workdir=str(tmp_path), mesh=ONE_DEVICE)
  with pytest.raises(identity.StaleRunError, match=r"target\.digest: "):
    crafting.craft(model, variables, images, labels,
                   _target(model, images, (labels + 1) % 4), config, key,
                   workdir=str(tmp_path), mesh=ONE_DEVICE)
  # A run recorded before identity records cannot be checked: refused.
  run_file = tmp_path / "crafting_run.json"
  run_file.write_text(json.dumps({"num_poisons": 32, "batch_size": 16,
                                  "steps": 3, "restarts": 2}))
  with pytest.raises(identity.StaleRunError, match="no identity record"):
    crafting.craft(model, variables, images, labels, target, config, key,
                   workdir=str(tmp_path), mesh=ONE_DEVICE)


def test_quantize_stays_within_the_ball():
  images = np.array([[[[0], [10], [250], [128]]]], np.uint8)
  delta = np.array([[[[-0.5], [0.1], [0.1], [-4.4 / 255]]]], np.float32)
  out = crafting.quantize(images, delta, 8 / 255)
  np.testing.assert_array_equal(out.ravel(), [0, 18, 255, 124])


def test_regularizers_hand_values():
  delta = jnp.full((1, 4, 4, 1), 0.5)
  images = jnp.full((1, 4, 4, 1), 0.25)
  assert float(Regularizers(l2=2.0)(images, delta)) == pytest.approx(0.5)
  # A vertical edge of height 1 in one of 3 column gaps per row.
  edge = jnp.zeros((1, 4, 4, 1)).at[:, :, 2:].set(1.0)
  assert float(Regularizers(tv=1.0)(images, edge)) == pytest.approx(1 / 3)
  assert float(Regularizers(ssim=1.0)(images, jnp.zeros_like(delta))) == (
      pytest.approx(0.0, abs=1e-6))
  assert float(Regularizers(ssim=1.0)(images, delta)) > 0.1
  with pytest.raises(ValueError, match="must be >= 0"):
    Regularizers(tv=-1.0)


def test_config_errors_name_the_fix():
  with pytest.raises(ValueError, match="pixel units"):
    crafting.CraftConfig(epsilon=8)
  with pytest.raises(ValueError, match="objective"):
    crafting.CraftConfig(epsilon=EPS, objective="cosine")
  model, variables, images, labels = _setup()
  with pytest.raises(ValueError, match="target"):
    crafting.craft(model, variables, images, labels, None, _config(),
                   jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="uint8"):
    crafting.craft(model, variables, images.astype(np.float32), labels,
                   None, _config(objective="gradient_norm"),
                   jax.random.PRNGKey(0))
