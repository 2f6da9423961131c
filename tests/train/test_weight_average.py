"""Weight averaging over a repair's last epochs, in memory and resumed."""

import jax
import numpy as np
import pytest

from jaxwm import data as jaxwm_data
from jaxwm.defenses import repair_engine
from jaxwm.train import recipe
from jaxwm.train import weight_average

import tiny

EPOCHS = 3


@pytest.fixture(scope="module")
def setting():
  config = tiny.digits_cnn_config(1)
  train, _ = recipe.load_datasets(config)
  model = recipe.train_model(config, train)
  clean = jaxwm_data.stratified_subset(train, 0.2, 0)
  return repair_engine.repair_recipe(config, 0.05, EPOCHS), model, clean


def _leaves(variables):
  return [np.asarray(leaf) for leaf in
          jax.tree_util.tree_leaves(jax.device_get(variables))]


def test_the_average_is_the_mean_of_the_last_epochs(setting):
  config, model, clean = setting
  seen = {}

  def keep(epoch, state):
    seen[epoch] = _leaves(state.variables())

  averaged = repair_engine.train_repair(config, model, clean,
                                        average_epochs=2, on_epoch_end=keep)
  assert sorted(seen) == [1, 2, 3]
  expected = [(a + b) / 2 for a, b in zip(seen[2], seen[3])]
  got = _leaves(averaged.variables)
  assert len(got) == len(expected)
  for leaf, mean in zip(got, expected):
    np.testing.assert_allclose(leaf, mean, rtol=1e-6, atol=1e-7)
  # The batch statistics are averaged too, and the result differs from
  # the last epoch's model.
  assert "batch_stats" in averaged.variables
  assert any(not np.allclose(leaf, last) for leaf, last in zip(got, seen[3]))
  last = repair_engine.train_repair(config, model, clean, average_epochs=1)
  for leaf, final in zip(_leaves(last.variables), seen[3]):
    np.testing.assert_array_equal(leaf, final)


def test_a_resumed_run_averages_the_same_epochs(setting, tmp_path):
  config, model, clean = setting
  whole = repair_engine.train_repair(config, model, clean, average_epochs=2)

  def stop_in_the_last_epoch(epoch, state):
    del state
    if epoch == EPOCHS:
      # After the average took epochs 2 and 3, before the engine's
      # checkpoint of epoch 3: the rerun trains epoch 3 alone, so it needs
      # the average's own checkpoint for epoch 2.
      raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    repair_engine.train_repair(config, model, clean, average_epochs=2,
                               workdir=str(tmp_path),
                               on_epoch_end=stop_in_the_last_epoch)
  resumed = repair_engine.train_repair(config, model, clean,
                                       average_epochs=2,
                                       workdir=str(tmp_path))
  for got, expected in zip(_leaves(resumed.variables),
                           _leaves(whole.variables)):
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  # A finished run in the same workdir restores the average, trains nothing.
  again = repair_engine.train_repair(config, model, clean, average_epochs=2,
                                     workdir=str(tmp_path))
  for got, expected in zip(_leaves(again.variables),
                           _leaves(resumed.variables)):
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("bad", [-1, 4, 1.5, 2.0, True, "2", "two", None])
def test_average_epochs_are_checked(bad):
  with pytest.raises(ValueError, match="average_epochs"):
    weight_average.check_average_epochs(bad, EPOCHS)


def test_the_average_needs_at_least_one_epoch(setting):
  _, model, _ = setting
  with pytest.raises(ValueError, match=r"average_epochs must be an integer "
                     r"in \[1, 3\], got 0"):
    weight_average.EpochAverage(model.variables, EPOCHS, 0)


def test_the_average_is_refused_before_the_last_epoch(setting):
  _, model, _ = setting
  average = weight_average.EpochAverage(model.variables, EPOCHS, 2)
  average.on_epoch_end(2, model.state)
  with pytest.raises(RuntimeError, match="up to 2 of 3"):
    average.variables()
  skipping = weight_average.EpochAverage(model.variables, EPOCHS, 2)
  with pytest.raises(RuntimeError, match="epoch 3 came next"):
    skipping.on_epoch_end(3, model.state)


def test_checkpoints_made_without_averaging_are_not_averaged(setting,
                                                             tmp_path):
  config, model, clean = setting
  repair_engine.train_repair(config, model, clean, workdir=str(tmp_path))
  with pytest.raises(RuntimeError, match="new workdir"):
    repair_engine.train_repair(config, model, clean, average_epochs=2,
                               workdir=str(tmp_path))
