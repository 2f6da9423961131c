"""Ensembles: every member trains as it would alone, by either strategy."""

import jax
import ml_collections
import numpy as np
import pytest

from jaxwm import train
from jaxwm.data.dataset import Dataset
from jaxwm.models import get_model
from jaxwm.train import ensemble

OPTIMIZER = ml_collections.ConfigDict(dict(
    optimizer="sgd", learning_rate=0.05, schedule="constant", momentum=0.9,
    nesterov=False, weight_decay=5e-4))
BATCH, EPOCHS, SUBSET = 32, 2, 96


def _toy_data(n=192, seed=0):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 4, size=n)
  images = rng.integers(0, 60, size=(n, 8, 8, 1), dtype=np.uint8)
  for i, label in enumerate(labels):
    r, c = divmod(int(label), 2)
    images[i, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 150
  return Dataset(images, labels, 4)


def _model_and_optimizer():
  model = get_model("cnn", 4, width=4, dense_width=16)
  return model, train.make_optimizer(OPTIMIZER, SUBSET // BATCH, EPOCHS)


def _member_setup(model, optimizer, members):
  """Per member: its initial state, data key and rows of the data."""
  rng = np.random.default_rng(1)
  rows = np.stack([np.sort(rng.choice(192, SUBSET, replace=False))
                   for _ in range(members)])
  states = [train.create_train_state(model, optimizer, (8, 8, 1),
                                     jax.random.PRNGKey(10 + e))
            for e in range(members)]
  data_keys = [jax.random.PRNGKey(100 + e) for e in range(members)]
  return states, data_keys, rows


def _max_abs_diff(a, b):
  a, b = jax.device_get((a, b))
  return max(jax.tree.leaves(jax.tree.map(
      lambda x, y: float(np.max(np.abs(x - y))), a, b)))


@pytest.mark.parametrize("strategy,members", [
    ("vmap", 3), ("map", 3), ("unroll", 3), ("vmap", 8), ("map", 8),
    ("unroll", 8)])
def test_each_member_equals_the_member_trained_alone(strategy, members):
  data = _toy_data()
  model, optimizer = _model_and_optimizer()
  states, data_keys, rows = _member_setup(model, optimizer, members)
  # 3 members (not a multiple of the suite's devices) are trained
  # data-parallel, 8 sharded over the devices.
  assert ensemble.members_sharded(members, train.make_mesh()) == (
      members == 8)
  step = train.make_train_step(model, optimizer, ensemble=strategy,
                               members=members)
  trained = train.fit(step, ensemble.stack(states), data, batch_size=BATCH,
                      num_epochs=EPOCHS, data_rng=ensemble.stack(data_keys),
                      members=rows, progress_bar=False)
  assert trained.params["head"]["kernel"].shape[0] == members
  initial = jax.device_get([state.params for state in states])
  alone_step = train.make_train_step(model, optimizer)
  for e in (0, members - 1):
    alone = train.fit(alone_step, states[e], data.take(rows[e]),
                      batch_size=BATCH, num_epochs=EPOCHS,
                      data_rng=data_keys[e], progress_bar=False)
    member = ensemble.member(trained, e)
    assert int(member.step) == int(alone.step) == EPOCHS * SUBSET // BATCH
    assert _max_abs_diff(member.params, alone.params) <= 1e-5
    assert _max_abs_diff(member.params, initial[e]) > 1e-3


def test_auto_strategy_follows_the_backend():
  assert ensemble.choose_strategy("auto", "cpu") == "unroll"
  assert ensemble.choose_strategy("auto", "gpu") == "vmap"
  assert ensemble.choose_strategy("vmap", "cpu") == "vmap"
  with pytest.raises(ValueError, match=r"'pmap'.*'vmap', 'map', 'unroll', 'auto'"):
    ensemble.choose_strategy("pmap")


def test_bad_members_are_named():
  data = _toy_data()
  model, optimizer = _model_and_optimizer()
  states, data_keys, _ = _member_setup(model, optimizer, 2)
  step = train.make_train_step(model, optimizer, ensemble="map", members=2)
  with pytest.raises(ValueError, match=r"members must be int \[E, M\]"):
    train.fit(step, ensemble.stack(states), data, batch_size=BATCH,
              num_epochs=1, data_rng=ensemble.stack(data_keys),
              members=np.array([[0, 500]]), progress_bar=False)
  with pytest.raises(ValueError, match="members >= 1"):
    train.make_train_step(model, optimizer, ensemble="map")
