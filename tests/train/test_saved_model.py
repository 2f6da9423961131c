"""Saved models: load_model from checkpoints and exports, never retraining,
bit-identical predictions, and refusal of damaged files."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from configs import train as train_config
from jaxwm.secure_files import TamperedFileError
from jaxwm.train import recipe


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """(model, test set, the experiments/train.py-like workdir)."""
  workdir = tmp_path_factory.mktemp("run")
  config = train_config.get_config("digits,runlocal")
  train_set, test_set = recipe.load_datasets(config)
  model = recipe.train_model(config, train_set,
                             workdir=str(workdir / "model"))
  return model, test_set, workdir


def _same_predictions(loaded, model, test_set):
  np.testing.assert_array_equal(loaded.logits(test_set.images),
                                model.logits(test_set.images))
  np.testing.assert_array_equal(loaded.predict_proba(test_set.images),
                                model.predict_proba(test_set.images))


@pytest.mark.parametrize("where", ["workdir", "model folder"])
def test_load_model_from_checkpoints_is_bit_identical(trained, where):
  model, test_set, workdir = trained
  folder = workdir if where == "workdir" else workdir / "model"
  loaded = recipe.load_model(folder)
  assert loaded.spec == model.spec
  _same_predictions(loaded, model, test_set)


def test_export_round_trips_bit_identically(trained, tmp_path):
  model, test_set, _ = trained
  digest = recipe.export_model(model, tmp_path / "suspect")
  assert sorted(os.listdir(tmp_path)) == ["suspect.json", "suspect.msgpack"]
  description = json.loads((tmp_path / "suspect.json").read_text())
  assert description["model"] == {
      "name": "cnn", "kwargs": {}, "num_classes": 10,
      "image_shape": [8, 8, 1], "dtype": "float32"}
  loaded = recipe.load_model(tmp_path / "suspect", digest=digest)
  _same_predictions(loaded, model, test_set)
  # A loaded model exports the same weights, byte for byte.
  recipe.export_model(loaded, tmp_path / "again")
  assert ((tmp_path / "again.msgpack").read_bytes() ==
          (tmp_path / "suspect.msgpack").read_bytes())


def _export(trained, tmp_path):
  return recipe.export_model(trained[0], tmp_path / "m")


def test_truncated_weights_are_refused(trained, tmp_path):
  _export(trained, tmp_path)
  weights = tmp_path / "m.msgpack"
  weights.write_bytes(weights.read_bytes()[:-100])
  with pytest.raises(TamperedFileError, match="truncated or modified"):
    recipe.load_model(tmp_path / "m")


def test_pickle_in_place_of_the_weights_is_never_unpickled(trained, tmp_path):
  _export(trained, tmp_path)

  class Boom:
    def __reduce__(self):
      return (os.system, ("touch " + str(tmp_path / "pwned"),))

  (tmp_path / "m.msgpack").write_bytes(pickle.dumps(Boom()))
  with pytest.raises(TamperedFileError):
    recipe.load_model(tmp_path / "m")
  assert not (tmp_path / "pwned").exists()


def test_edited_description_is_refused_by_the_digest(trained, tmp_path):
  digest = _export(trained, tmp_path)
  description = tmp_path / "m.json"
  record = json.loads(description.read_text())
  record["model"]["num_classes"] = 11
  description.write_text(json.dumps(record))
  with pytest.raises(TamperedFileError, match="digest you kept"):
    recipe.load_model(tmp_path / "m", digest=digest)
  # Without the digest, the weights no longer fit the described network.
  with pytest.raises(TamperedFileError, match="head/bias"):
    recipe.load_model(tmp_path / "m")


def test_missing_saved_model_names_the_fix(tmp_path):
  with pytest.raises(FileNotFoundError, match="holds no jaxwm checkpoints"):
    recipe.load_model(tmp_path)
  with pytest.raises(FileNotFoundError, match="PREFIX.msgpack and"):
    recipe.load_model(tmp_path / "nothing")


def test_digest_is_refused_for_a_checkpoint_folder(trained):
  with pytest.raises(ValueError, match="checked against their own manifests"):
    recipe.load_model(trained[2], digest="0" * 64)
