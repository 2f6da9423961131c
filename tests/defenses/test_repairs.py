"""Model repairs on digits: interface, pruning, fine-pruning, MCR, registry."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import train as train_configs
from jaxwm import data as jaxwm_data
from jaxwm.defenses import fine_pruning
from jaxwm.defenses import fine_tuning
from jaxwm.defenses import mode_connectivity
from jaxwm.defenses import pruning
from jaxwm.defenses import repair_engine
from jaxwm.defenses import repairs
from jaxwm.models import resnet
from jaxwm.train import optim
from jaxwm.train import recipe
from jaxwm.train import step as step_lib

# Repair settings small enough for a test: one epoch each (WILD: two,
# averaged, at a rate the tiny model does not diverge at).
FAST = {
    "fine_tuning": {"num_epochs": 1},
    "pruning": {"rate": 0.5},
    "fine_pruning": {"fine_tune": {"num_epochs": 1}},
    "wild": {"num_epochs": 2, "average_epochs": 2, "learning_rate": 0.03},
    "nad": {"num_epochs": 1, "teacher": {"num_epochs": 1}},
    "mcr": {"num_epochs": 1, "endpoints": {"num_epochs": 1},
            "batch_stat_epochs": 1},
}


def _config():
  config = train_configs.base_config("digits")
  config.model_kwargs.width = 4
  config.model_kwargs.dense_width = 16
  config.train.num_epochs = 3
  config.train.batch_size = 32
  config.train.log_every_steps = 4  # see tests/watermark/test_embedding.py
  return config


@pytest.fixture(scope="module")
def digits():
  train, test = recipe.load_datasets(_config())
  return jaxwm_data.stratified_subset(train, 0.25, 0), test


@pytest.fixture(scope="module")
def suspect():
  config = _config()
  train, _ = recipe.load_datasets(config)
  return recipe.train_model(config, train)


def _leaves(variables):
  flat = jax.tree_util.tree_flatten_with_path(jax.device_get(variables))[0]
  return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat}


def _check_interface(repaired, suspect, test):
  assert repaired.model == suspect.model
  before, after = _leaves(suspect.variables), _leaves(repaired.variables)
  assert {k: v.shape for k, v in after.items()} == {
      k: v.shape for k, v in before.items()}
  assert any(not np.array_equal(after[k], before[k]) for k in before)
  assert repaired.predict(test.images[:7]).shape == (7,)
  assert repaired.predict_proba(test.images[:7]).shape == (7, 10)
  assert repaired.evaluate(test)["accuracy"] > 0.2


# MCR's interface is checked on the curve fixture (test_mcr_...).
@pytest.mark.parametrize("name", sorted(set(FAST) - {"mcr"}))
def test_each_repair_keeps_the_interface(digits, suspect, name):
  clean, test = digits
  settings = repairs.make_settings(name, FAST[name])
  _check_interface(repairs.run_repair(name, _config(), suspect, clean,
                                      settings), suspect, test)


@pytest.mark.parametrize("layers, tuned_layers", [
    (fine_tuning.FC, ("Dense_0", "head")), (fine_tuning.HEAD, ("head",))])
def test_fc_and_head_fine_tuning_freeze_the_other_layers(digits, suspect,
                                                        layers,
                                                        tuned_layers):
  clean, test = digits
  curve = []

  def measure(epoch, state):
    model = dataclasses.replace(suspect, state=state)
    curve.append((epoch, model.evaluate(test)["accuracy"]))

  tuned = fine_tuning.repair(_config(), suspect, clean,
                             fine_tuning.FineTuneConfig(layers=layers,
                                                        num_epochs=2),
                             on_epoch_end=measure)
  assert [epoch for epoch, _ in curve] == [1, 2]
  assert curve[-1][1] == tuned.evaluate(test)["accuracy"]
  before, after = _leaves(suspect.state.params), _leaves(tuned.state.params)
  for name, value in before.items():
    changed = not np.array_equal(after[name], value)
    assert changed == any(layer in name for layer in tuned_layers), name


def _bn_output(model, images):
  """The last convolution's batch-normalised output [N, h, w, C]."""
  _, state = model.model.apply(model.variables, images / 255.0,
                               capture_intermediates=True,
                               mutable=["intermediates"])
  return np.asarray(state["intermediates"]["BatchNorm_1"]["__call__"][0])


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.5, 0.75, 0.98])
def test_pruning_zeroes_the_least_active_channels(digits, suspect, rate):
  clean, test = digits
  ranking = pruning.rank_channels(suspect, clean)
  assert ranking.layer == pruning.ConvLayer(("Conv_1",), ("BatchNorm_1",), 8)
  activity = np.maximum(_bn_output(suspect, clean.images), 0).mean(
      axis=(0, 1, 2))
  np.testing.assert_allclose(ranking.activity, activity, rtol=1e-4,
                             atol=1e-6)
  pruned = pruning.prune(suspect, ranking, rate)
  silent = np.flatnonzero(np.all(_bn_output(pruned, test.images) == 0,
                                 axis=(0, 1, 2)))
  count = int(np.floor(rate * 8 + 0.5))
  assert silent.size == count
  assert set(silent) == set(np.argsort(activity)[:count])
  np.testing.assert_array_equal(
      _leaves(pruned.state.params)["['Dense_0']['kernel']"],
      _leaves(suspect.state.params)["['Dense_0']['kernel']"])


@pytest.fixture(scope="module")
def residual(suspect):
  """A small ResNet (one block a stage) at its initialisation on digits."""
  net = resnet.ResNet(num_classes=10, stage_sizes=(1, 1, 1, 1))
  variables = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))
  return repair_engine.with_variables(
      dataclasses.replace(suspect, model=net, spec=None,
                          predict_fn=step_lib.make_predict_fn(net,
                                                              suspect.mesh)),
      variables)


@pytest.mark.parametrize("rate", [0.5, 0.98])
def test_pruning_a_resnet_masks_its_last_stage_output(digits, residual,
                                                      rate):
  clean, test = digits

  def stage_output(model, images):
    _, state = model.model.apply(model.variables, images / 255.0,
                                 mutable=["intermediates"])
    return np.array(state["intermediates"]["block4"][0])

  ranking = pruning.rank_channels(residual, clean)
  assert ranking.layer == pruning.PooledStage(("head",), 512)
  activity = stage_output(residual, clean.images).mean(axis=(0, 1, 2))
  np.testing.assert_allclose(ranking.activity, activity, rtol=1e-4,
                             atol=1e-6)
  pruned = pruning.prune(residual, ranking, rate)
  count = int(np.floor(rate * 512 + 0.5))
  removed = np.argsort(activity, kind="stable")[:count]
  # The logits of the unpruned network with those channels of the last
  # stage's output set to zero before the pooling.
  masked = stage_output(residual, test.images[:50])
  masked[..., removed] = 0
  head = residual.variables["params"]["head"]
  np.testing.assert_allclose(
      np.asarray(pruned.logits(test.images[:50])),
      masked.mean(axis=(1, 2)) @ np.asarray(head["kernel"])
      + np.asarray(head["bias"]), rtol=1e-4, atol=1e-4)
  before, after = _leaves(residual.variables), _leaves(pruned.variables)
  changed = [name for name in before
             if not np.array_equal(before[name], after[name])]
  assert changed == ["['params']['head']['kernel']"]
  kernel = after["['params']['head']['kernel']"]
  assert set(np.flatnonzero(np.all(kernel == 0, axis=1))) == set(removed)


def test_pruning_refuses_rates_outside_zero_to_one():
  for rate in (-0.1, 1.0):
    with pytest.raises(ValueError, match="pruning rate"):
      pruning.PruneConfig(rate)


def test_fine_pruning_keeps_the_pruned_channels_silent(digits, suspect):
  clean, test = digits
  settings = repairs.make_settings("fine_pruning", FAST["fine_pruning"])
  repaired = fine_pruning.repair(_config(), suspect, clean, settings)
  pruned = pruning.rank_channels(suspect, clean).least_active(
      settings.prune.rate)
  silent = np.all(_bn_output(repaired, test.images) == 0, axis=(0, 1, 2))
  assert set(np.flatnonzero(silent)) == set(pruned) and pruned.size == 4


@pytest.fixture(scope="module")
def curve(digits, suspect):
  clean, _ = digits
  return mode_connectivity.fine_tuned_curve(
      _config(), suspect, clean, repairs.make_settings("mcr", FAST["mcr"]))


def test_mcr_keeps_the_interface(digits, suspect, curve):
  _, test = digits
  _check_interface(curve.at(repairs.make_settings("mcr").t), suspect, test)


def test_mcr_curve_ends_at_the_endpoints(digits, curve):
  _, test = digits
  for t, end in ((0.0, curve.start), (1.0, curve.end)):
    at = curve.at(t)
    expected, got = _leaves(end.variables), _leaves(at.variables)
    for name, value in expected.items():
      np.testing.assert_array_equal(got[name], value, err_msg=name)
    np.testing.assert_array_equal(at.logits(test.images), end.logits(
        test.images))


def test_mcr_curve_is_the_quadratic_bezier(curve):
  start, end = (_leaves(m.state.params) for m in (curve.start, curve.end))
  control = _leaves(curve.control)
  midpoint = {k: (start[k] + end[k]) / 2 for k in start}
  assert any(not np.allclose(control[k], midpoint[k]) for k in control)
  t = 0.3
  got = _leaves(curve.variables_at(t)["params"])
  for name in start:
    np.testing.assert_allclose(
        got[name], 0.49 * start[name] + 0.42 * control[name] +
        0.09 * end[name], rtol=1e-5, atol=1e-6)


def test_mcr_interior_point_reestimates_batch_statistics(curve):
  t = 0.5
  at = _leaves(curve.at(t).variables)
  interpolated = _leaves(curve.variables_at(t))
  stats = [k for k in at if "batch_stats" in k]
  assert stats and all(
      not np.allclose(at[k], interpolated[k]) for k in stats)
  for name in (k for k in at if "params" in k):
    np.testing.assert_array_equal(at[name], interpolated[name])


def test_curve_model_needs_batches_divisible_by_the_points(curve):
  model = mode_connectivity.BezierCurveModel(
      curve.start.model.apply,
      mode_connectivity.CurveEnds(curve.start.variables,
                                  curve.end.variables), (0.25, 0.75))
  with pytest.raises(ValueError, match="multiple of curve_points"):
    model.apply({"params": {"control": curve.control}},
                jnp.zeros((3, 8, 8, 1)))


@pytest.mark.parametrize("schedule", repair_engine.SCHEDULES)
def test_repair_recipe_schedules(schedule):
  config = repair_engine.repair_recipe(
      train_configs.base_config("digits"), 0.04, 3, schedule)
  rates = optim.schedule_from_config(config.train, steps_per_epoch=10,
                                     num_epochs=3)
  # (rate at the middle, at the last step, after the end) per schedule; the
  # step decays at 0.8 * 3 epochs = optimizer step 24.
  middle, last, end = {repair_engine.CONSTANT: (0.04, 0.04, 0.04),
                       repair_engine.COSINE: (0.02, None, 0.0),
                       repair_engine.STEP: (0.04, 0.004, 0.004)}[schedule]
  assert float(rates(0)) == pytest.approx(0.04)
  assert float(rates(15)) == pytest.approx(middle)
  if schedule == repair_engine.STEP:
    assert float(rates(23)) == pytest.approx(0.04)
    assert float(rates(24)) == pytest.approx(last)
  assert float(rates(30)) == pytest.approx(end, abs=1e-9)


@pytest.mark.parametrize("bad", [0, 2.0, 2.5, True, "3", None])
def test_epoch_and_point_counts_must_be_integers(bad):
  """A float such as 2.0 is refused here, as the engine's recipe check
  would refuse it later; each message names the field and the value."""
  with pytest.raises(ValueError, match=f"num_epochs must be an integer >= 1, "
                     f"got {bad!r}"):
    repair_engine.check_schedule(0.1, bad)
  for field in ("curve_points", "batch_stat_epochs"):
    with pytest.raises(ValueError, match=f"{field} must be an integer"):
      mode_connectivity.McrConfig(**{field: bad})


def test_settings_overrides_and_bad_names():
  settings = repairs.make_settings("fine_pruning",
                                   {"prune": {"rate": 0.8}})
  assert settings.prune.rate == 0.8
  assert settings.fine_tune == fine_pruning.FinePruneConfig().fine_tune
  with pytest.raises(ValueError, match="no setting 'lambda'"):
    repairs.make_settings("wild", {"lambda": 2.0})
  with pytest.raises(ValueError, match="unknown repair"):
    repairs.get_repair("retraining")
  with pytest.raises(TypeError, match="takes WildConfig"):
    repairs.run_repair("wild", None, None, None,
                       fine_tuning.FineTuneConfig())


def test_repairs_refuse_data_of_another_task(suspect):
  other = jaxwm_data.synthetic(64, (8, 8, 1), 3, seed=0)
  with pytest.raises(ValueError, match="has 10 classes"):
    pruning.rank_channels(suspect, other)


def test_models_without_convolutions_cannot_be_pruned(suspect):
  class Mlp(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      return nn.Dense(10, name="head")(x.reshape(x.shape[0], -1))

  mlp = Mlp()
  variables = mlp.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))
  model = repair_engine.with_variables(
      dataclasses.replace(suspect, model=mlp), variables)
  with pytest.raises(ValueError, match="no convolutional layer"):
    pruning.last_conv_layer(model, (8, 8, 1))
