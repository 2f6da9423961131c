"""The poison-alignment probe and the victim's alignment curve (digits)."""

import json
import os

import jax
import numpy as np
import pytest

from configs import craft_poison as craft_configs
from jaxwm import identity
from jaxwm.alignment import objective, transfer
from jaxwm.train import losses, optim, recipe
from jaxwm.train.state import create_train_state


def _config():
  config = craft_configs.get_config("availability,digits,runlocal")
  config.model_kwargs.width = 8
  config.train.num_epochs = 2
  return config


def _mislabelled(data):
  """Every label moved to the next class: a poison that unlearns the truth."""
  return data.replace(labels=(data.labels + 1) % data.num_classes)


def _reference(model, variables, released, clean):
  """The two alignments from whole-set gradients taken in one batch each."""
  def gradient(data, per_example_loss):
    def mean_loss(params):
      logits = model.apply({**variables, "params": params},
                           data.images.astype(np.float32) / 255, train=False)
      return per_example_loss(logits, data.labels).mean()
    return jax.grad(mean_loss)(variables["params"])

  released_gradient = gradient(released, losses.cross_entropy)
  return {"alignment": objective.alignment_loss(
              released_gradient,
              gradient(clean, objective.reverse_cross_entropy)),
          "clean_alignment": objective.alignment_loss(
              released_gradient, gradient(clean, losses.cross_entropy))}


def test_probe_matches_whole_set_gradients():
  config = _config()
  train, _ = recipe.load_datasets(config)
  model = recipe.build_model(config, train.num_classes)
  variables = create_train_state(
      model, optim.make_optimizer(config.train, 1, 1), train.image_shape,
      jax.random.PRNGKey(0)).variables()
  released = _mislabelled(train)
  # Batches of 64 rows: the last one is padded (runlocal digits: 143 rows).
  point = transfer.alignment_probe(model, released, train,
                                             batch_size=64)(variables)
  reference = _reference(model, variables, released, train)
  for name in ("alignment", "clean_alignment"):
    assert point[name] == pytest.approx(float(reference[name]), abs=1e-4)
  assert point["clean_alignment"] > 1e-2
  # Released data equal to the clean data: the gradient is the clean one.
  same = transfer.alignment_probe(model, train, train,
                                            batch_size=64)(variables)
  assert abs(same["clean_alignment"]) < 1e-5


def test_curve_follows_the_victim_and_is_kept(tmp_path):
  config = _config()
  train, test = recipe.load_datasets(config)
  released = _mislabelled(train)
  folder = str(tmp_path / "curve")
  curve = transfer.alignment_curve(config, released, train, test,
                                             stream=1, folder=folder)
  assert [point["epoch"] for point in curve] == [1, 2]
  # The probed victim is the recipe's victim of that stream, and its last
  # point is measured at the victim's final parameters.
  victim = recipe.train_model(config, released, stream=1)
  assert curve[-1]["test_accuracy"] == pytest.approx(
      victim.evaluate(test)["accuracy"])
  final = transfer.alignment_probe(
      victim.model, released, train,
      batch_size=config.train.batch_size)(victim.variables)
  for name in ("alignment", "clean_alignment"):
    assert curve[-1][name] == pytest.approx(final[name], abs=1e-5)
  assert curve[0]["alignment"] != pytest.approx(curve[1]["alignment"])
  # A rerun reads the finished curve back instead of training again.
  path = os.path.join(folder, transfer.CURVE_FILE)
  with open(path) as f:
    kept = json.load(f)
  kept["value"][0]["alignment"] = 0.5
  with open(path, "w") as f:
    json.dump(kept, f)
  assert transfer.alignment_curve(
      config, released, train, test, stream=1, folder=folder) == kept["value"]
  # The curve belongs to its victim and data: others are refused by name.
  with pytest.raises(identity.StaleRunError,
                     match=r"released\.labels: .*\n  stream: 1 \(on disk\)"):
    transfer.alignment_curve(config, _mislabelled(released), train,
                                       test, stream=2, folder=folder)
