"""MOVE's verdict on an independently trained model, end to end on digits.

A meta-classifier trained on one victim and one benign model learns those
two models, not the external features, and accuses models trained
independently on other data. The recipe trains it on several victim-like
and benign models and compares with a benign model it never saw; on
digits the independent model (the thief's half, another seed) must then
not be accused. A key too small for the test's m is refused before any
model trains.
"""

from __future__ import annotations

import os

import pytest

from configs import model_stealing as stealing_configs
from jaxwm import monitor
from jaxwm.models import registry
from jaxwm.recipes import model_stealing
from jaxwm.recipes import stealing_methods
from jaxwm.train import recipe
from jaxwm.verify import levels
from jaxwm.watermark import move

import tiny

MODEL = "model_stealing_tests_mlp"


class _Mlp(tiny.Mlp):
  """The tests' MLP, 32 units wide."""

  width: int = 32


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
  """A white-box run on all of digits: 5-epoch MLPs, the direct copy
  only (the attacks have tests of their own)."""
  registry.register(MODEL, _Mlp)
  config = stealing_configs.get_config("move_whitebox,digits")
  config.model = MODEL
  config.train.num_epochs = 5
  config.attacks = ("direct_copy",)
  config.move.style.steps = 20
  config.independent.model_kwargs.width = 32  # another seed only
  config.meta.num_references = 3
  workdir = str(tmp_path_factory.mktemp("model_stealing"))
  log = monitor.RunLog(
      pictures_dir=str(tmp_path_factory.mktemp("model_stealing_pictures")))
  with monitor.recording(log):
    result = model_stealing.run_experiment(config, workdir)
  return config, workdir, result, log


def test_an_independent_model_is_not_accused(outcome):
  config, _, result, _ = outcome
  independent = result["metrics"]["independent"]
  assert independent["test_decision"] == levels.RETAIN
  assert independent["p_value"] >= config.move.alpha
  # Not accused; inconclusive where the verifier missed its watermarked
  # control (the digits verifier's 5-epoch MLPs do).
  assert independent["decision"] != levels.REJECT


def test_the_meta_classifier_learns_from_several_models(outcome):
  config, workdir, _, _ = outcome
  roles = [name.split("_")[0] for name in os.listdir(workdir)]
  count = config.meta.num_models
  # Victim-like and benign models, and one more benign model for the test.
  assert sum(role.startswith("victim") for role in roles) == count
  assert sum(role.startswith("benign") for role in roles) == count + 1
  # The other benign references of the test over models.
  assert sum(role.startswith("reference") for role in roles) == (
      config.meta.num_references - 1)


def test_the_verifier_reports_its_controls(outcome):
  config, workdir, result, _ = outcome
  controls = result["metrics"]["method"]["controls"]
  assert set(controls) == {"unseen_victim_like", "unseen_benign"}
  for verdict in controls.values():
    assert 0 < verdict["p_value"] <= 1
    assert verdict["decision"] == levels.decision(
        verdict["p_value"] < config.move.alpha)
  # An unseen benign model, like the independent one, is not accused.
  assert controls["unseen_benign"]["decision"] == levels.RETAIN
  roles = [name.split("-")[0] for name in os.listdir(workdir)]
  assert sum(role.startswith("control_") for role in roles) == 2


def test_each_verdict_is_the_test_s_unless_the_controls_disown_it(outcome):
  _, _, result, _ = outcome
  metrics = result["metrics"]
  controls = metrics["method"]["controls"]
  for entry in [*metrics["attacks"].values(), metrics["independent"]]:
    assert set(entry["controls"]) == {"unseen_victim_like", "unseen_benign"}
    judging = {role: {"decision": decision}
               for role, decision in entry["controls"].items()}
    assert entry["decision"] == stealing_methods.controlled_decision(
        entry["test_decision"], judging)
  # The stolen models are of the victim's architecture: its controls.
  for entry in metrics["attacks"].values():
    assert entry["controls"] == {role: control["decision"]
                                 for role, control in controls.items()}


@pytest.mark.parametrize("test, victim_like, benign, expected", [
    (levels.REJECT, levels.REJECT, levels.RETAIN, levels.REJECT),
    (levels.RETAIN, levels.REJECT, levels.RETAIN, levels.RETAIN),
    # The verifier accused an innocent model: its accusations say nothing.
    (levels.REJECT, levels.REJECT, levels.REJECT, levels.INCONCLUSIVE),
    (levels.RETAIN, levels.REJECT, levels.REJECT, levels.RETAIN),
    # It missed a watermarked model: its acquittals say nothing.
    (levels.RETAIN, levels.RETAIN, levels.RETAIN, levels.INCONCLUSIVE),
    (levels.REJECT, levels.RETAIN, levels.RETAIN, levels.REJECT),
])
def test_controls_disown_what_they_contradict(test, victim_like, benign,
                                              expected):
  controls = {"unseen_victim_like": {"decision": victim_like},
              "unseen_benign": {"decision": benign}}
  assert stealing_methods.controlled_decision(test, controls) == expected
  with pytest.raises(ValueError, match="test_decision='inconclusive'"):
    stealing_methods.controlled_decision(levels.INCONCLUSIVE, controls)


def test_the_stylised_training_images_are_pictured(outcome):
  _, _, _, log = outcome
  assert [os.path.basename(path) for path in log.written
          if path.endswith("move_stylised.png")] == ["move_stylised.png"]


@pytest.mark.parametrize("variant", ["move_whitebox,digits",
                                     "move_blackbox,digits",
                                     "move_blackbox,digits,runlocal"])
def test_the_configured_key_holds_m_verification_images(variant):
  config = stealing_configs.get_config(variant)
  owner_data, _, _ = recipe.load_owner_and_attacker(
      config, config.split.attacker_fraction)
  block = config.move.to_dict()
  setting = block.pop("setting")
  settings = move.MoveConfig.from_dict(block)
  _, key = move.watermark(settings, owner_data, transform=lambda x: x)
  assert settings.m(setting) <= key.verification_positions.size
  move.check_verification_size(settings, key, setting)


def test_a_test_that_cannot_run_is_refused_before_any_training(tmp_path):
  config = stealing_configs.get_config("move_blackbox,digits")
  config.move.style.steps = 2
  config.move.m_black_box = 1000
  with pytest.raises(ValueError, match="m = 1000 verification images"):
    model_stealing.run_experiment(config, str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == ["style_cache"]
