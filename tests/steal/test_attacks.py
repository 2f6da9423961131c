"""The six model-stealing attacks on digits: real copies, counted queries."""

import dataclasses

import numpy as np
import pytest

from configs import train as train_configs
from jaxwm import steal
from jaxwm.data import disjoint_split
from jaxwm.identity import StaleRunError
from jaxwm.steal import attacks
from jaxwm.train import recipe

# Agreement with the victim on the digits test set: chance is 0.1 (ten
# balanced classes); every stolen model must agree on more than half.
MIN_AGREEMENT = 0.5

# log_every=1: a host sync per iteration (see _config).
ZERO_SHOT = steal.ZeroShotConfig(iterations=50, batch_size=32,
                                 generator_width=8, student_learning_rate=0.2,
                                 log_every=1)
SETTINGS = steal.StealConfig(
    fine_tuning=steal.FineTuningConfig(num_epochs=2, learning_rate=0.01),
    distillation=steal.DistillationConfig(num_epochs=4),
    zero_shot=ZERO_SHOT,
    label_query=steal.StudentRecipe(num_epochs=4),
    logit_query=steal.StudentRecipe(num_epochs=4))


def _config():
  config = train_configs.base_config("digits")
  config.model_kwargs.width = 8
  config.model_kwargs.dense_width = 32
  config.train.batch_size = 32
  config.train.num_epochs = 10
  # Synchronise often: many steps in flight on fake CPU devices can
  # deadlock XLA's CPU collectives (as in tests/watermark/test_embedding.py).
  config.train.log_every_steps = 4
  return config


@pytest.fixture(scope="module")
def task():
  """(victim's half, attacker's half, test set) of digits."""
  train, test = recipe.load_datasets(_config())
  victim_half, attacker_half = disjoint_split(train, 0.5, seed=0)
  return victim_half, attacker_half, test


@pytest.fixture(scope="module")
def victim(task):
  return recipe.train_model(_config(), task[0], stream=1)


@pytest.fixture(scope="module")
def zero_shot_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("zero_shot"))


@pytest.fixture(scope="module")
def stolen(task, victim, zero_shot_dir):
  """Every attack's StolenModel, by name."""
  return {name: steal.steal(
      name, victim, task[1], _config(), SETTINGS, stream=2,
      workdir=zero_shot_dir if name == attacks.ZERO_SHOT else None)
          for name in steal.ATTACKS}


def _agreement(model, victim, images):
  return float(np.mean(model.predict(images) == victim.predict(images)))


@pytest.mark.parametrize("name", steal.ATTACKS)
def test_each_attack_copies_the_victims_decisions(name, task, victim,
                                                  stolen):
  agreement = _agreement(stolen[name].model, victim, task[2].images)
  assert agreement > MIN_AGREEMENT, (name, agreement)
  assert stolen[name].name == name


def test_direct_copy_is_the_victims_weights(task, victim, stolen):
  copy = stolen[attacks.DIRECT_COPY]
  assert copy.queries == 0
  assert _agreement(copy.model, victim, task[2].images) == 1.0
  np.testing.assert_array_equal(copy.model.logits(task[2].images),
                                victim.logits(task[2].images))


@pytest.mark.parametrize("name", [attacks.FINE_TUNING, attacks.DISTILLATION,
                                  attacks.LABEL_QUERY, attacks.LOGIT_QUERY])
def test_query_attacks_query_each_attacker_image_once(name, task, stolen):
  assert stolen[name].queries == len(task[1])


def test_zero_shot_counts_every_generated_image(stolen):
  assert stolen[attacks.ZERO_SHOT].queries == (
      ZERO_SHOT.iterations * (ZERO_SHOT.student_steps + 1) *
      ZERO_SHOT.batch_size)


def test_fine_tuning_starts_from_the_victim(victim, stolen):
  """Only fine-tuning keeps the victim's weights nearby; the students
  trained from scratch start elsewhere."""

  def distance(name):
    ours = stolen[name].model.state.params["head"]["kernel"]
    theirs = victim.state.params["head"]["kernel"]
    return float(np.linalg.norm(np.asarray(ours) - np.asarray(theirs)))

  assert distance(attacks.FINE_TUNING) < 0.5 * distance(attacks.LABEL_QUERY)


def test_a_zero_shot_rerun_restores_its_checkpoint(task, victim, stolen,
                                                   zero_shot_dir):
  again = steal.steal(attacks.ZERO_SHOT, victim, task[1], _config(),
                      SETTINGS, stream=2, workdir=zero_shot_dir)
  images = task[2].images[:64]
  np.testing.assert_array_equal(
      again.model.logits(images),
      stolen[attacks.ZERO_SHOT].model.logits(images))
  other = dataclasses.replace(SETTINGS, zero_shot=dataclasses.replace(
      ZERO_SHOT, noise_dim=50))
  with pytest.raises(StaleRunError, match="noise_dim"):
    steal.steal(attacks.ZERO_SHOT, victim, task[1], _config(), other,
                stream=2, workdir=zero_shot_dir)


def test_bad_requests_name_the_fix(task, victim):
  with pytest.raises(ValueError, match="use one of direct_copy, "):
    steal.steal("prune", victim, task[1], _config())
  other = _config()
  other.model_kwargs.width = 16
  with pytest.raises(ValueError, match="must be the victim's architecture"):
    steal.steal(attacks.FINE_TUNING, victim, task[1], other)
  with pytest.raises(ValueError, match="temperature must be > 0"):
    steal.DistillationConfig(temperature=0.0)
  with pytest.raises(ValueError, match="ftll, ftal, rtll, rtal"):
    steal.FineTuningConfig(variant="prune")


def test_steal_config_from_dict():
  config = steal.StealConfig.from_dict(
      {"distillation": {"temperature": 2.0, "model": "resnet18"},
       "zero_shot": {"iterations": 5}})
  assert config.distillation.temperature == 2.0
  assert config.zero_shot.iterations == 5
  assert config.label_query == steal.StudentRecipe()
  assert steal.StealConfig.from_dict(config.to_dict()) == config
  with pytest.raises(ValueError, match=r"unknown attack\(s\) \['prune'\]"):
    steal.StealConfig.from_dict({"prune": {}})
  with pytest.raises(ValueError, match=r"\['temp'\]"):
    steal.StealConfig.from_dict({"distillation": {"temp": 2.0}})


def test_student_recipe_overrides_only_what_it_names():
  config = _config()
  same = steal.StudentRecipe().config(config)
  assert same.to_dict() == config.to_dict()
  other = steal.StudentRecipe(model="resnet18", num_epochs=3,
                              learning_rate=0.2).config(config)
  assert (other.model, other.model_kwargs.to_dict(), other.train.num_epochs,
          other.train.learning_rate) == ("resnet18", {}, 3, 0.2)
  assert config.model == "cnn"  # the victim's config is unchanged.


def test_student_config_gives_each_attacks_architecture():
  config = _config()
  settings = steal.StealConfig(
      label_query=steal.StudentRecipe(model="cnn", model_kwargs={"width": 4}),
      zero_shot=steal.ZeroShotConfig(model_kwargs={"width": 2}))
  victims = {name: attacks.student_config(name, config, settings)
             for name in ("direct_copy", "fine_tuning")}
  for derived in victims.values():
    assert derived.model_kwargs.to_dict() == config.model_kwargs.to_dict()
  assert attacks.student_config(
      "label_query", config, settings).model_kwargs.to_dict() == {"width": 4}
  assert attacks.student_config(
      "zero_shot", config, settings).model_kwargs.to_dict() == {"width": 2}
  with pytest.raises(ValueError, match="unknown model-stealing attack"):
    attacks.student_config("theft", config)
