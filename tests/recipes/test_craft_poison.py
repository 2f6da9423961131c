"""The crafted-poison experiment end to end on digits (runlocal)."""

import glob
import os
import shutil

import jax
import numpy as np
import pytest

from configs import craft_poison as craft_configs
from configs import train as train_configs
from jaxwm import identity
from jaxwm.poison import availability
from jaxwm.poison.watermark_key import WatermarkKey
from jaxwm.recipes import common
from jaxwm.recipes import craft_poison
from jaxwm.train import recipe


def _config(variant: str):
  config = craft_configs.get_config(variant)
  config.model_kwargs.width = 8
  return config


def _saved_key(workdir: str, method: str) -> str:
  (path,) = glob.glob(os.path.join(workdir, f"{method}_poison_*",
                                   "poison_key.json"))
  return path[:-len(".json")]


def test_availability_poison_end_to_end(tmp_path):
  config = _config("availability,digits,runlocal")
  workdir = str(tmp_path / "work")
  outcome = craft_poison.run_experiment(config, workdir)
  metrics = outcome["metrics"]
  assert (outcome["dataset"], outcome["model"]) == ("digits", "cnn")
  assert 0.0 <= metrics["test_accuracy"] <= 1.0
  assert 0.0 <= metrics["clean_test_accuracy"] <= 1.0
  assert 0.0 <= metrics["crafting_objective"] <= 2.0
  # The key on disk is the one reported, within eps, covering every image.
  prefix = _saved_key(workdir, "availability")
  key = availability.AvailabilityKey.load(prefix, metrics["poison_key_digest"])
  assert key.poisoned_indices.size == metrics["poisoned_samples"] > 0
  # poison.epsilon is in units of 1/255, the perturbation in grey levels.
  assert np.abs(key.perturbation.astype(np.int32)).max() <= (
      config.poison.epsilon)
  # A rerun with the same workdir reuses the poison and both victims.
  assert craft_poison.run_experiment(config, workdir) == outcome


def test_ubw_c_end_to_end_reports_the_three_scenarios(tmp_path):
  config = _config("ubw_c,digits,runlocal")
  # The whole digits training set for 5 epochs: verification needs a victim
  # that classifies some source-class test images correctly.
  config.train_fraction = 1.0
  config.train.num_epochs = 5
  workdir = str(tmp_path / "work")
  metrics = craft_poison.run_experiment(config, workdir)["metrics"]
  for name in ("benign_accuracy", "asr_a", "asr_c",
               "benign_accuracy_clean_model", "asr_a_clean_model"):
    assert 0.0 <= metrics[name] <= 1.0, name
  assert 0.0 <= metrics["d_p"] <= np.log(10) + 1e-6
  assert set(metrics["p_value"]) == {"malicious", "independent_t",
                                     "independent_m"}
  for p_value in metrics["p_value"].values():
    assert 0.0 < p_value <= 1.0
  key = WatermarkKey.load(_saved_key(workdir, "ubw_c"),
                          metrics["poison_key_digest"])
  assert key.poisoned_indices.size == metrics["poisoned_samples"] > 0
  # UBW-C perturbs poison_rate of the training set, drawn from all classes.
  train, _ = recipe.load_datasets(config)
  indices = key.poisoned_indices
  assert indices.size == round(config.watermark.poison_rate * len(train))
  assert np.unique(indices).size == indices.size and indices.max() < len(train)
  assert np.unique(train.labels[indices]).size > 1


def test_unknown_defense_is_refused(tmp_path):
  config = _config("random_noise,digits,runlocal")
  config.defense.name = "median_filter"
  with pytest.raises(ValueError, match="median_filter"):
    craft_poison.run_experiment(config, str(tmp_path / "work"))


def test_victim_recipe_replaces_only_the_fields_set():
  config = _config("availability,digits,runlocal")
  config.victim.num_epochs = 3
  config.victim.augment.shift = 0
  victims = craft_poison.victim_config(config)
  assert victims.train.num_epochs == 3
  assert victims.train.augment.shift == 0
  assert victims.train.augment.flip == config.train.augment.flip
  assert victims.train.learning_rate == config.train.learning_rate
  # The surrogate's recipe is untouched.
  assert (config.train.num_epochs, config.train.augment.shift) == (1, 1)


def test_availability_recipes_train_the_papers_forty_epochs():
  for method in craft_configs.AVAILABILITY:
    config = craft_configs.get_config(f"{method},fashion_mnist,cnn")
    assert config.train.num_epochs == 40
    # runlocal stays a one-epoch smoke run.
    assert craft_configs.get_config(
        f"{method},fashion_mnist,cnn,runlocal").train.num_epochs == 1
  shared = train_configs.base_config("fashion_mnist,cnn").train.num_epochs
  assert shared != 40
  for method in craft_configs.WATERMARKS:
    # UBW-C and Sleeper Agent keep the shared recipe.
    assert craft_configs.get_config(
        f"{method},fashion_mnist,cnn").train.num_epochs == shared


def test_a_new_victim_recipe_reuses_the_poison(tmp_path):
  config = _config("random_noise,digits,runlocal")
  workdir = str(tmp_path / "work")
  first = craft_poison.run_experiment(config, workdir)["metrics"]
  config.victim.augment.shift = 0
  second = craft_poison.run_experiment(config, workdir)["metrics"]
  (poison_folder,) = glob.glob(os.path.join(workdir, "random_noise_poison_*"))
  assert first["poison_key_digest"] == second["poison_key_digest"]
  assert len(glob.glob(os.path.join(poison_folder, "victim_*"))) == 2
  assert len(glob.glob(os.path.join(workdir, "clean_victim_*"))) == 2


def test_victims_can_start_where_the_surrogate_started(tmp_path):
  config = _config("availability,digits,runlocal")
  config.victim.init = "surrogate"
  workdir = str(tmp_path / "work")
  metrics = craft_poison.run_experiment(config, workdir)["metrics"]
  # The clean victim then is the surrogate: same stream, recipe and data.
  train, test = recipe.load_datasets(config)
  surrogate = craft_poison.train_surrogate(config, train, workdir)
  assert metrics["clean_test_accuracy"] == surrogate.evaluate(test)["accuracy"]
  (poison_folder,) = glob.glob(os.path.join(workdir, "availability_poison_*"))
  assert glob.glob(os.path.join(poison_folder, "victim_surrogate_init_*"))
  assert glob.glob(os.path.join(workdir, "clean_victim_surrogate_init_*"))
  config.victim.init = "random"
  with pytest.raises(ValueError, match="victim.init='random'"):
    craft_poison.run_experiment(config, workdir)


def test_availability_can_align_against_the_surrogates_checkpoints(tmp_path):
  config = _config("availability,digits,runlocal")
  config.train.num_epochs = 2
  config.poison.surrogate_epochs = (1, 2)
  workdir = str(tmp_path / "work")
  ensemble = craft_poison.run_experiment(config, workdir)["metrics"]
  assert 0.0 <= ensemble["crafting_objective"] <= 2.0
  train, _ = recipe.load_datasets(config)
  surrogate, members = craft_poison.train_surrogate_keeping_epochs(
      config, train, workdir, (1, 2))
  # The last member is the trained surrogate, the first an earlier state.
  same = jax.tree.map(np.array_equal, members[1], surrogate.variables)
  assert all(jax.tree.leaves(same))
  moved = jax.tree.map(np.array_equal, members[0], members[1])
  assert not all(jax.tree.leaves(moved))
  # Checkpoints kept by another surrogate are refused before any training.
  other = config.copy_and_resolve_references()
  other.train.learning_rate = 0.5
  kept = [os.path.join(common.model_dir(
      workdir, "surrogate", settings, {"kept_epochs": [1, 2]}), "kept_epochs")
          for settings in (config, other)]
  shutil.copytree(*kept)
  with pytest.raises(identity.StaleRunError,
                     match=r"(?s)after epoch 1 in .*train\.learning_rate: "):
    craft_poison.train_surrogate_keeping_epochs(other, train, workdir,
                                                    (1, 2))
  # The ensemble's poison is not the trained surrogate's alone.
  config.poison.surrogate_epochs = ()
  single = craft_poison.run_experiment(config, workdir)["metrics"]
  assert single["poison_key_digest"] != ensemble["poison_key_digest"]
  for epochs in ((2, 1), (0, 2), (3,)):
    config.poison.surrogate_epochs = epochs
    with pytest.raises(ValueError, match="must be increasing epochs"):
      craft_poison.run_experiment(config, workdir)
  config = _config("ubw_c,digits,runlocal")
  config.poison.surrogate_epochs = (1,)
  with pytest.raises(ValueError, match="applies to availability"):
    craft_poison.run_experiment(config, workdir)
