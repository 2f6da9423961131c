"""The training engine: sharding equivalence, compilation, resumption, errors."""


import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxwm import train
from jaxwm.data.dataset import Dataset
from jaxwm.models import get_model

OPTIMIZER = ml_collections.ConfigDict(dict(
    optimizer="sgd", learning_rate=0.05, schedule="cosine", momentum=0.9,
    nesterov=True, weight_decay=5e-4))


def _digits_like(n=256, seed=0):
  """Learnable toy data: the label is which quadrant is brightest."""
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 60, size=(n, 8, 8, 1), dtype=np.uint8)
  labels = rng.integers(0, 4, size=n)
  for i, label in enumerate(labels):
    r, c = divmod(int(label), 2)
    images[i, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 150
  return Dataset(images, labels, 4)


def _setup(mesh, dtype=jnp.float32, epochs=2, batch_size=32, n=256):
  model = get_model("cnn", 4, dtype=dtype, width=8, dense_width=32)
  optimizer = train.make_optimizer(OPTIMIZER, n // batch_size, epochs)
  state = train.create_train_state(model, optimizer, (8, 8, 1),
                                   jax.random.PRNGKey(0))
  step = train.make_train_step(model, optimizer, mesh=mesh)
  return model, optimizer, state, step


def _fit(mesh, workdir=None, step=None, epochs=2, feed="auto", **kw):
  model, _, state, built_step = _setup(mesh, epochs=epochs, **kw)
  state = train.fit(step or built_step, state, _digits_like(), batch_size=32,
                    num_epochs=epochs, data_rng=jax.random.PRNGKey(1),
                    mesh=mesh, workdir=workdir, feed=feed,
                    progress_bar=False)
  return model, state, built_step


def _max_abs_diff(a, b):
  a, b = jax.device_get((a, b))
  return max(jax.tree.leaves(jax.tree.map(
      lambda x, y: float(np.max(np.abs(x - y))), a, b)))


def test_the_suites_devices_match_one_device():
  assert jax.device_count() > 1  # tests/conftest.py's fake devices
  _, one, _ = _fit(train.make_mesh(jax.devices()[:1]))
  _, sharded, _ = _fit(train.make_mesh())
  assert int(one.step) == int(sharded.step) == 16
  assert _max_abs_diff(one.params, sharded.params) <= 1e-5
  assert _max_abs_diff(one.model_state, sharded.model_state) <= 1e-5
  # The parameters did move: the comparison is not between two initial states.
  _, _, initial, _ = _setup(train.make_mesh())
  assert _max_abs_diff(one.params, initial.params) > 1e-3


def test_host_feed_matches_device_feed():
  mesh = train.make_mesh()
  _, device_fed, _ = _fit(mesh, feed="device")
  _, host_fed, _ = _fit(mesh, feed="host")
  assert _max_abs_diff(device_fed.params, host_fed.params) <= 1e-6


def test_step_compiles_once_and_learns():
  mesh = train.make_mesh()
  model, state, step = _fit(mesh, epochs=6)
  assert step._cache_size() == 1  # pylint: disable=protected-access
  predict = train.make_predict_fn(model, mesh)
  result = train.evaluate(predict, state.variables(), _digits_like(seed=1),
                          batch_size=64, mesh=mesh)
  assert result["accuracy"] > 0.9


class _Killed(Exception):
  pass


def test_killed_run_resumes_and_reproduces(tmp_path):
  mesh = train.make_mesh()
  _, uninterrupted, _ = _fit(mesh, workdir=str(tmp_path / "a"), epochs=3)

  _, _, _, step = _setup(mesh, epochs=3)
  calls = []

  def dying_step(state, batch, rng):
    calls.append(1)
    if len(calls) == 20:  # in the third epoch, after the epoch-2 checkpoint
      raise _Killed()
    return step(state, batch, rng)

  workdir = str(tmp_path / "b")
  with pytest.raises(_Killed):
    _fit(mesh, workdir=workdir, step=dying_step, epochs=3)
  _, resumed, _ = _fit(mesh, workdir=workdir, epochs=3)
  assert int(resumed.step) == 24
  assert _max_abs_diff(uninterrupted.params, resumed.params) == 0.0
  assert _max_abs_diff(uninterrupted.opt_state, resumed.opt_state) == 0.0


def test_corrupted_checkpoint_is_rejected(tmp_path):
  mesh = train.make_mesh()
  workdir = str(tmp_path)
  _fit(mesh, workdir=workdir, epochs=1)
  step_dir = tmp_path / "checkpoints" / "8"
  files = sorted(p for p in step_dir.rglob("*") if p.is_file()
                 and p.stat().st_size > 64)
  victim = files[-1]
  data = victim.read_bytes()
  victim.write_bytes(data[: len(data) // 2])  # truncate
  with pytest.raises(train.CorruptedCheckpointError, match="SHA-256"):
    _fit(mesh, workdir=workdir, epochs=2)


def test_mismatched_run_refuses_to_resume(tmp_path):
  mesh = train.make_mesh()
  _fit(mesh, workdir=str(tmp_path), epochs=1)
  model, _, state, step = _setup(mesh, epochs=2)
  with pytest.raises(ValueError, match="batch_size"):
    train.fit(step, state, _digits_like(), batch_size=64, num_epochs=2,
              data_rng=jax.random.PRNGKey(1), mesh=mesh,
              workdir=str(tmp_path), progress_bar=False)


def test_frozen_parameters_do_not_move():
  mesh = train.make_mesh()
  model, optimizer, state, _ = _setup(mesh)
  head_only = train.freeze(optimizer, state.params, lambda p: p[0] == "head")
  state = train.create_train_state(model, head_only, (8, 8, 1),
                                   jax.random.PRNGKey(0))
  initial = jax.device_get(state.params)
  step = train.make_train_step(model, head_only, mesh=mesh)
  state = train.fit(step, state, _digits_like(), batch_size=32, num_epochs=1,
                    data_rng=jax.random.PRNGKey(1), mesh=mesh,
                    progress_bar=False)
  for name in initial:
    moved = _max_abs_diff(initial[name], state.params[name])
    assert (moved > 0) == (name == "head"), name


def test_bf16_compute_keeps_float32_params_and_soft_targets():
  mesh = train.make_mesh()
  model, _, state, step = _setup(mesh, dtype=jnp.bfloat16)
  data = _digits_like()
  soft = np.eye(4, dtype=np.float32)[data.labels] * 0.9 + 0.025
  state = train.fit(step, state, data, batch_size=32, num_epochs=2,
                    data_rng=jax.random.PRNGKey(1), targets=soft, mesh=mesh,
                    progress_bar=False)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(state.params))
  assert all(np.isfinite(np.asarray(p)).all()
             for p in jax.tree.leaves(state.params))


def test_bad_batch_sizes_are_explained():
  mesh = train.make_mesh()
  _, _, state, step = _setup(mesh)
  with pytest.raises(ValueError, match=f"divisible by the "
                     f"{jax.device_count()} devices"):
    train.fit(step, state, _digits_like(), batch_size=31, num_epochs=1,
              data_rng=jax.random.PRNGKey(1), mesh=mesh, progress_bar=False)
  with pytest.raises(ValueError, match="exceeds"):
    train.fit(step, state, _digits_like(n=16), batch_size=32, num_epochs=1,
              data_rng=jax.random.PRNGKey(1), mesh=mesh, progress_bar=False)
