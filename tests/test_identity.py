"""jaxwm.identity: identity records, their field-by-field check and the
JSON caches that keep one."""

import json

import numpy as np
import pytest

from configs import train as train_configs
from jaxwm import identity
from jaxwm.data.dataset import Dataset


def test_training_fields_are_the_config_fields_that_make_a_model():
  config = train_configs.get_config("digits,runlocal")
  fields = identity.training_fields(config)
  assert set(fields) == {"seed", "dataset", "data_dir", "model",
                         "model_kwargs", "train_fraction", "train"}
  assert fields["train"]["learning_rate"] == config.train.learning_rate
  # Bookkeeping does not make another model, nor another folder.
  assert "log_every_steps" not in fields["train"]
  before = identity.folder_fingerprint(config, "x")
  config.train.log_every_steps = 1
  config.train.checkpoint_every_epochs = 5
  assert identity.folder_fingerprint(config, "x") == before
  config.train.momentum = 0.5
  assert identity.folder_fingerprint(config, "x") != before


def test_check_names_every_differing_field_with_both_values():
  saved = {"seed": 0, "train": {"learning_rate": 0.05, "batch_size": 64},
           "milestones": (1, 2), "gone": 1}
  current = {"seed": 5, "train": {"learning_rate": 0.5, "batch_size": 64},
             "milestones": [1, 2], "new": "x"}
  assert identity.differences(saved, current) == [
      ("gone", 1, "(absent)"), ("new", "(absent)", "x"), ("seed", 0, 5),
      ("train.learning_rate", 0.05, 0.5)]
  with pytest.raises(identity.StaleRunError) as error:
    identity.check(saved, current, what="the checkpoint", folder="/w/model")
  message = str(error.value)
  assert "the checkpoint in /w/model was made by another run" in message
  assert "4 field(s)" in message
  assert "  seed: 0 (on disk) != 5 (this run)" in message
  assert "  train.learning_rate: 0.05 (on disk) != 0.5 (this run)" in message
  assert "delete /w/model" in message and "new --workdir" in message
  assert isinstance(error.value, ValueError)
  identity.check(saved, {**saved, "milestones": [1, 2]}, what="x", folder="y")
  with pytest.raises(identity.StaleRunError, match="no identity record"):
    identity.check(None, current, what="the checkpoint", folder="/w/model")


def test_json_cache_returns_its_value_only_for_the_same_identity(tmp_path):
  path = str(tmp_path / "sub" / "curve.json")
  record = {"seed": 0, "data": {"images": "ab" * 32}}
  assert identity.read_json(path, record, what="the curve") is None
  identity.write_json(path, record, [{"epoch": 1, "value": 0.5}])
  assert identity.read_json(path, dict(record), what="the curve") == [
      {"epoch": 1, "value": 0.5}]
  with pytest.raises(identity.StaleRunError, match=r"data\.images: "):
    identity.read_json(path, {**record, "data": {"images": "cd" * 32}},
                       what="the curve")
  # A file kept before records (a bare list) is refused, not read.
  with open(path, "w") as f:
    json.dump([{"epoch": 1, "value": 0.5}], f)
  with pytest.raises(identity.StaleRunError, match="no identity record"):
    identity.read_json(path, record, what="the curve")


def test_dataset_identity_sees_images_labels_and_targets():
  images = np.zeros((4, 2, 2, 1), np.uint8)
  data = Dataset(images, np.arange(4) % 2, 2)
  base = identity.dataset_identity(data)
  assert (base["examples"], base["num_classes"]) == (4, 2)
  poisoned = images.copy()
  poisoned[0, 0, 0, 0] = 255
  assert identity.dataset_identity(
      data.replace(images=poisoned))["images"] != base["images"]
  assert identity.dataset_identity(
      data, np.eye(2)[data.labels])["labels"] != base["labels"]
