"""A training run's identity: recorded in its checkpoints, checked field by
field before any restore, and made of everything that determines it."""

import jax
import ml_collections
import numpy as np
import pytest

from configs import train as train_configs
from jaxwm import identity
from jaxwm import train
from jaxwm.data.augment import AugmentConfig
from jaxwm.data.dataset import Dataset
from jaxwm.models import get_model
from jaxwm.train import losses, recipe

OPTIMIZER = ml_collections.ConfigDict(dict(
    optimizer="sgd", learning_rate=0.05, schedule="constant", momentum=0.9,
    nesterov=False, weight_decay=0.0))
IDENTITY = {"seed": 0, "train": {"learning_rate": 0.05, "momentum": 0.9}}


def _data(n=64, shift=0):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 200, size=(n, 8, 8, 1), dtype=np.uint8) + shift
  return Dataset(images.astype(np.uint8), np.arange(n) % 4, 4)


def _fit(workdir, *, data=None, epochs=1, identity_record=None):
  """One tiny CNN run of ``epochs`` epochs of 2 steps in ``workdir``."""
  mesh = train.make_mesh()
  model = get_model("cnn", 4, width=4, dense_width=16)
  optimizer = train.make_optimizer(OPTIMIZER, 2, epochs)
  state = train.create_train_state(model, optimizer, (8, 8, 1),
                                   jax.random.PRNGKey(0))
  return train.fit(train.make_train_step(model, optimizer, mesh=mesh), state,
                   _data() if data is None else data, batch_size=32,
                   num_epochs=epochs, data_rng=jax.random.PRNGKey(1),
                   mesh=mesh, workdir=str(workdir), progress_bar=False,
                   identity=IDENTITY if identity_record is None else
                   identity_record)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A workdir holding one finished epoch of the run with ``IDENTITY``."""
  workdir = tmp_path_factory.mktemp("run")
  return workdir, _fit(workdir)


def test_the_same_run_reuses_its_checkpoint(finished):
  workdir, state = finished
  again = _fit(workdir)
  assert int(again.step) == int(state.step) == 2
  same = jax.tree.map(np.array_equal, jax.device_get(again.params),
                      jax.device_get(state.params))
  assert all(jax.tree.leaves(same))


def test_another_run_is_refused_naming_every_differing_field(finished):
  workdir, _ = finished
  other = {"seed": 5, "train": {"learning_rate": 0.5, "momentum": 0.9}}
  with pytest.raises(identity.StaleRunError) as error:
    _fit(workdir, identity_record=other)
  message = str(error.value)
  assert f"the checkpoint in {workdir} was made by another run" in message
  assert "  seed: 0 (on disk) != 5 (this run)" in message
  assert "  train.learning_rate: 0.05 (on disk) != 0.5 (this run)" in message
  assert "momentum" not in message
  assert f"delete {workdir}" in message
  # Other training data under the same identity: named by what differs.
  with pytest.raises(identity.StaleRunError,
                     match=r"train_data\.images: .*\(on disk\)") as error:
    _fit(workdir, data=_data(shift=1))
  assert "train_data.labels" not in str(error.value)


def test_a_checkpoint_past_this_runs_epochs_is_refused(tmp_path):
  _fit(tmp_path, epochs=2)
  with pytest.raises(identity.StaleRunError,
                     match="is at epoch 2, past this run's num_epochs=1"):
    _fit(tmp_path, epochs=1)


def test_a_checkpoint_without_a_record_is_refused(tmp_path, finished):
  _, state = finished
  # The metadata jaxwm wrote before identity records.
  checkpointer = train.Checkpointer(str(tmp_path))
  checkpointer.save(2, state, {"epoch": 1, "num_examples": 64,
                               "batch_size": 32})
  checkpointer.close()
  with pytest.raises(identity.StaleRunError, match="no identity record"):
    _fit(tmp_path)


def _shifted(shift):
  augment = AugmentConfig(shift=shift).apply
  return lambda images, key: augment(images, key)


def test_run_identity_covers_what_determines_the_model():
  config = train_configs.get_config("digits,runlocal")
  base = recipe.run_identity(config)
  assert base["loss_fn"]["name"] == "jaxwm.train.losses.cross_entropy_loss"
  assert base["input_transform"] is None and base["trainable"] is None
  variables = {"params": {"head": {"bias": np.zeros(10)}}}

  def changed(**kwargs):
    settings = config.copy_and_resolve_references()
    for name, value in kwargs.pop("fields", {}).items():
      *path, field = name.split(".")
      block = settings
      for part in path:
        block = block[part]
      block[field] = value
    return recipe.run_identity(settings, **kwargs)

  variants = [
      changed(fields={"seed": 1}), changed(fields={"data_dir": "/d"}),
      changed(fields={"model_kwargs.width": 8}),
      changed(fields={"train_fraction": 0.2}),
      changed(fields={"train.learning_rate": 0.5}),
      changed(fields={"train.augment.shift": 0}),
      changed(fields={"train.num_epochs": 2}),  # cosine: sets the schedule
      changed(stream=1), changed(init_variables=variables),
      changed(init_variables={"params": {"head": {"bias": np.ones(10)}}}),
      changed(trainable_paths=["head/bias"]),
      changed(loss_fn=losses.cross_entropy),
      changed(input_transform=_shifted(1)),
      changed(input_transform=_shifted(2)),
      changed(extra={"dp_sgd": {"l2_clip": 0.1}})]
  records = [identity.canonical(v) for v in [base, *variants]]
  assert len({str(r) for r in records}) == len(records)
  # Bookkeeping does not change the model.
  assert changed(fields={"train.log_every_steps": 1,
                         "train.checkpoint_every_epochs": 3}) == base
  # A step schedule trained longer continues the shorter run.
  config.train.schedule = "step"
  assert "num_epochs" not in recipe.run_identity(config)["train"]
  assert changed(fields={"train.num_epochs": 7}) == recipe.run_identity(
      config)
