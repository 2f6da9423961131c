"""Training stops at the first non-finite loss, naming its step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxwm import train
from jaxwm.data.dataset import Dataset

import tiny

RECIPE = ml_collections.ConfigDict(dict(
    optimizer="sgd", learning_rate=0.05, schedule="cosine", momentum=0.9,
    nesterov=True, weight_decay=5e-4))
EXAMPLES, BATCH, EPOCHS = 128, 16, 3  # 8 steps per epoch


def _data() -> Dataset:
  rng = np.random.default_rng(0)
  return Dataset(rng.integers(0, 255, (EXAMPLES, 8, 8, 1), dtype=np.uint8),
                 rng.integers(0, 4, EXAMPLES), 4)


def _fit_with_nan_loss_from(bad_step: int, workdir: str | None = None,
                            on_epoch_end=None, log_every_steps: int = 100):
  """Fits a linear model whose reported loss is NaN from the ``bad_step``-th
  step (1-based) on."""
  model = tiny.Linear(4)
  steps_per_epoch = EXAMPLES // BATCH
  optimizer = train.make_optimizer(RECIPE, steps_per_epoch, EPOCHS)
  state = train.create_train_state(model, optimizer, (8, 8, 1),
                                   jax.random.PRNGKey(0))
  step_fn = train.make_train_step(model, optimizer)
  calls = []

  def step(state, batch, rng):
    calls.append(None)
    state, metrics = step_fn(state, batch, rng)
    if len(calls) >= bad_step:
      metrics = {**metrics, "loss": metrics["loss"] * jnp.nan}
    return state, metrics

  train.fit(
      step, state, _data(), batch_size=BATCH, num_epochs=EPOCHS,
      data_rng=jax.random.PRNGKey(1), workdir=workdir,
      log_every_steps=log_every_steps, on_epoch_end=on_epoch_end,
      progress_bar=False,
      learning_rate=train.schedule_from_config(RECIPE, steps_per_epoch,
                                               EPOCHS))


def test_the_first_non_finite_step_is_reported_and_never_checkpointed(
    tmp_path, monkeypatch):
  syncs = []
  device_get = jax.device_get
  monkeypatch.setattr(jax, "device_get",
                      lambda x: syncs.append(None) or device_get(x))
  epochs_done = []
  workdir = str(tmp_path / "run")
  with pytest.raises(train.TrainingDivergedError) as caught:
    _fit_with_nan_loss_from(11, workdir=workdir,
                            on_epoch_end=lambda e, s: epochs_done.append(e))
  error = caught.value
  schedule = train.schedule_from_config(RECIPE, EXAMPLES // BATCH,
                                              EPOCHS)
  # Step 11 is the third of epoch 2; it is found at the epoch's end.
  assert (error.step, np.isnan(error.loss)) == (11, True)
  assert error.learning_rate == pytest.approx(float(schedule(10)))
  message = str(error)
  assert "step 11 (epoch 2)" in message
  assert f"learning rate {float(schedule(10)):.6g}" in message
  assert "train.learning_rate" in message and "float32" in message
  # Epoch 1 was finite and kept; the diverged epoch 2 never reached a
  # checkpoint or the epoch callback.
  assert epochs_done == [1]
  checkpointer = train.Checkpointer(workdir)
  try:
    assert checkpointer.latest_step() == EXAMPLES // BATCH
  finally:
    checkpointer.close()
  # No host synchronisation per step: two reads (progress line and
  # divergence flag) per epoch end reached.
  assert len(syncs) <= 4


def test_divergence_is_found_at_the_next_progress_line():
  with pytest.raises(train.TrainingDivergedError, match="step 3 ") as caught:
    _fit_with_nan_loss_from(3, log_every_steps=4)
  assert caught.value.step == 3
