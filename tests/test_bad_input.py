"""Bad input is refused before any work, with every problem named.

One table of cases across the launchers (run through their absl ``main``
as from the command line) and the verification functions: each sets one
bad value and checks that a ConfigError names the field and the value as
typed, and that no model was trained, no poison crafted, no suspect
queried and no folder made. Spies stand in for the engine and the
crafting loop and fail the test if they are called.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import math
import os
import sys
from typing import Any

import jax
import numpy as np
import pytest
from absl import flags

from configs import train as train_configs
from jaxwm import alignment
from jaxwm import defenses
from jaxwm import launch
from configs import dataset_watermark as dataset_watermark_configs
from jaxwm.config_checks import ConfigError
from jaxwm.config_checks import dataset_watermarks
from jaxwm.data import loaders
from jaxwm.poison import poisoned_label
from jaxwm.train import loop
from jaxwm.train import recipe
from jaxwm.poison import ownership
from jaxwm.watermark import adi

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Each launcher's module and a runlocal variant of its config that passes.
LAUNCHERS = {
    "train": "train.py:digits,runlocal",
    "dataset_watermark": "dataset_watermark.py:badnets,digits,runlocal",
    "ablate_ubw_p": "dataset_watermark.py:ubw_p,digits,runlocal",
    "craft_poison": "craft_poison.py:ubw_c,digits,runlocal",
    "alignment_transfer": "craft_poison.py:availability,digits,runlocal",
    "model_watermark": "model_watermark.py:adi_fromscratch,digits,runlocal",
    "false_acceptance": "model_watermark.py:false_acceptance,digits,runlocal",
    "removal": "removal.py:content,digits,runlocal",
    "model_stealing": "model_stealing.py:move_whitebox,digits,runlocal",
}
# The ablation needs a schedule that does not depend on the total epochs.
BASE_OVERRIDES = {"ablate_ubw_p": ("train.schedule=step",)}
# The engine itself, before the spies replace it.
_TRAIN_MODEL = recipe.train_model


@dataclasses.dataclass(frozen=True)
class Case:
  """One bad setting given to a launcher.

  Attributes:
    launcher: a key of LAUNCHERS.
    args: extra command-line arguments; ``{file}`` and ``{folder}`` stand
      for an existing file and folder. ``--config.`` is implied for
      arguments without a leading ``--``.
    field: the field the error must name.
    value: the value as typed (as the config holds it).
    variant: replaces the launcher's variant (``FILE.py:VARIANT``).
  """

  launcher: str
  args: tuple[str, ...]
  field: str
  value: Any
  variant: str | None = None


CASES = {
    # Defect 5: training settings that ran to exit 0 or crashed.
    "train_zero_epochs": Case("train", ("train.num_epochs=0",),
                              "train.num_epochs", 0),
    "train_negative_epochs": Case("train", ("train.num_epochs=-1",),
                                  "train.num_epochs", -1),
    "train_negative_batch": Case("train", ("train.batch_size=-4",),
                                 "train.batch_size", -4),
    "train_zero_batch": Case("train", ("train.batch_size=0",),
                             "train.batch_size", 0),
    "train_negative_lr": Case("train", ("train.learning_rate=-0.1",),
                              "train.learning_rate", -0.1),
    "train_nan_lr": Case("train", ("train.learning_rate=nan",),
                         "train.learning_rate", math.nan),
    "train_fraction_above_one": Case("train", ("train_fraction=1.5",),
                                     "train_fraction", 1.5),
    "train_momentum_one": Case("train", ("train.momentum=1.0",),
                               "train.momentum", 1.0),
    "train_unknown_optimizer": Case("train", ("train.optimizer=adagrad",),
                                    "train.optimizer", "adagrad"),
    "train_unknown_model": Case("train", ("model=resnet99",), "model",
                                "resnet99"),
    "train_unknown_dataset": Case("train", (), "dataset", "fashon_mnist",
                                  "train.py:fashon_mnist,runlocal"),
    # Defect 8: paths refused up front.
    "train_workdir_is_a_file": Case("train", ("--workdir={file}",),
                                    "--workdir", "{file}"),
    "train_output_is_a_folder": Case("train", ("--output_json={folder}",),
                                     "--output_json", "{folder}"),
    # Multi-process flags, refused before joining a job.
    "train_process_id_without_distributed": Case(
        "train", ("--process_id=1",), "--process_id", 1),
    "train_process_id_past_the_processes": Case(
        "train", ("--distributed", "--num_processes=2", "--process_id=2"),
        "--process_id", 2),
    # Verification settings, refused before any model is trained.
    "dataset_watermark_tau_above_one": Case(
        "dataset_watermark", ("verify.tau=1.5",), "verify.tau", 1.5),
    "dataset_watermark_negative_tau": Case(
        "dataset_watermark", ("verify.tau=-0.1",), "verify.tau", -0.1),
    "dataset_watermark_m_one": Case("dataset_watermark", ("verify.m=1",),
                                    "verify.m", 1),
    "dataset_watermark_poison_rate": Case(
        "dataset_watermark", ("watermark.poison_rate=1.5",),
        "watermark.poison_rate", 1.5),
    "dataset_watermark_target_out_of_range": Case(
        "dataset_watermark", ("watermark.target_label=10",),
        "watermark.target_label", 10),
    "dataset_watermark_source_class_is_the_target": Case(
        "dataset_watermark", ("verify.source_classes=(1,)",),
        "verify.source_classes", (1,)),
    "dataset_watermark_source_class_out_of_range": Case(
        "dataset_watermark", ("verify.source_classes=(10,)",),
        "verify.source_classes", (10,)),
    "dataset_watermark_patch_too_large": Case(
        "dataset_watermark", ("watermark.patch_size=9",),
        "watermark.patch_size", 9),
    # Defect 5: poisons refused only after the surrogate was trained.
    "craft_poison_negative_epsilon": Case(
        "craft_poison", ("poison.epsilon=-8",), "poison.epsilon", -8,
        "craft_poison.py:availability,digits,runlocal"),
    "craft_poison_poison_rate": Case(
        "craft_poison", ("watermark.poison_rate=1.5",),
        "watermark.poison_rate", 1.5),
    "craft_poison_source_class": Case(
        "craft_poison", ("watermark.source_class=12",),
        "watermark.source_class", 12),
    "craft_poison_unknown_defense": Case(
        "craft_poison", ("defense.name=median",), "defense.name", "median"),
    "craft_poison_victim_epochs": Case(
        "craft_poison", ("victim.num_epochs=0",), "victim.num_epochs", 0),
    "craft_poison_verify_m": Case("craft_poison", ("verify.m=1",),
                                  "verify.m", 1),
    "craft_poison_surrogate_epochs": Case(
        "craft_poison", ("poison.surrogate_epochs=(2,1)",),
        "poison.surrogate_epochs", (2, 1),
        "craft_poison.py:availability,digits,runlocal"),
    # Defect 5: another launcher's variant, refused before training.
    "model_watermark_given_false_acceptance": Case(
        "model_watermark", (), "watermark.mode", "unmarked",
        "model_watermark.py:false_acceptance,digits,runlocal"),
    "model_watermark_alpha": Case("model_watermark", ("watermark.alpha=1.5",),
                                  "watermark.alpha", 1.5),
    "model_watermark_held_out_fraction": Case(
        "model_watermark", ("attack.held_out_fraction=1.0",),
        "attack.held_out_fraction", 1.0),
    "model_watermark_attack_epochs": Case(
        "model_watermark", ("attack.num_epochs=0",), "attack.num_epochs", 0),
    "model_watermark_triggers_per_batch": Case(
        "model_watermark", ("watermark.triggers_per_batch=40",),
        "watermark.triggers_per_batch", 40),
    "model_watermark_cosine_without_attack_lr": Case(
        "model_watermark", ("train.schedule=cosine",),
        "attack.learning_rate", None),
    "false_acceptance_given_adi": Case(
        "false_acceptance", (), "watermark.mode", "fromscratch",
        "model_watermark.py:adi_fromscratch,digits,runlocal"),
    "false_acceptance_no_models": Case(
        "false_acceptance", ("false_acceptance.num_models=0",),
        "false_acceptance.num_models", 0),
    "false_acceptance_subset_fraction": Case(
        "false_acceptance", ("false_acceptance.subset_fraction=0.0",),
        "false_acceptance.subset_fraction", 0.0),
    "false_acceptance_ensemble_size": Case(
        "false_acceptance", ("false_acceptance.ensemble_size=-2",),
        "false_acceptance.ensemble_size", -2),
    "false_acceptance_ensemble_strategy": Case(
        "false_acceptance", ("false_acceptance.ensemble_strategy=pmap",),
        "false_acceptance.ensemble_strategy", "pmap"),
    "false_acceptance_unknown_verifier": Case(
        "false_acceptance", ("false_acceptance.verifier=binomial",),
        "false_acceptance.verifier", "binomial"),
    "false_acceptance_dataset_label_consistent": Case(
        "false_acceptance", ("watermark.method=label_consistent",),
        "watermark.method", "label_consistent",
        "false_acceptance.py:dataset,ubw_p,digits,runlocal"),
    "false_acceptance_dataset_tau": Case(
        "false_acceptance", ("verify.tau=2.0",), "verify.tau", 2.0,
        "false_acceptance.py:dataset,ubw_p,digits,runlocal"),
    "false_acceptance_move_subset_fraction": Case(
        "false_acceptance", ("false_acceptance.subset_fraction=1.5",),
        "false_acceptance.subset_fraction", 1.5,
        "false_acceptance.py:move_whitebox,digits,runlocal"),
    "false_acceptance_move_alpha": Case(
        "false_acceptance", ("move.alpha=1.5",), "move.alpha", 1.5,
        "false_acceptance.py:move_whitebox,digits,runlocal"),
    "model_stealing_attacker_fraction": Case(
        "model_stealing", ("split.attacker_fraction=1.0",),
        "split.attacker_fraction", 1.0),
    "model_stealing_no_meta_models": Case(
        "model_stealing", ("meta.num_models=0",), "meta.num_models", 0),
    "model_stealing_one_reference": Case(
        "model_stealing", ("meta.num_references=1",), "meta.num_references",
        1),
    "model_stealing_alpha": Case("model_stealing", ("move.alpha=1.5",),
                                 "move.alpha", 1.5),
    "model_stealing_m_below_two": Case(
        "model_stealing", ("move.m_white_box=1",), "move.m_white_box", 1),
    "model_stealing_independent_same_seed": Case(
        "model_stealing", ("independent.seed_offset=0",),
        "independent.seed_offset", 0),
    "model_stealing_entangled_target_class": Case(
        "model_stealing", ("entangled.target_class=12",),
        "entangled.target_class", 12,
        variant="model_stealing.py:entangled,digits,runlocal"),
    "model_stealing_gradient_matching_target": Case(
        "model_stealing", ("watermark.target_label=10",),
        "watermark.target_label", 10,
        variant="model_stealing.py:gradient_matching,digits,runlocal"),
    "model_stealing_unknown_setting": Case(
        "model_stealing", ("move.setting=grey_box",), "move.setting",
        "grey_box"),
    "model_stealing_dataset_inference_m_below_two": Case(
        "model_stealing", ("dataset_inference.m=1",), "dataset_inference.m",
        1, "model_stealing.py:dataset_inference_blackbox,digits,runlocal"),
    "ablate_ubw_p_given_badnets": Case(
        "ablate_ubw_p", (), "watermark.method", "badnets",
        "dataset_watermark.py:badnets,digits,runlocal"),
    "ablate_ubw_p_unknown_arm": Case("ablate_ubw_p", ("ablation.only=cnn64",),
                                     "ablation.only", "cnn64"),
    "ablate_ubw_p_epochs_not_increasing": Case(
        "ablate_ubw_p", ("ablation.epochs=(2,1)",), "ablation.epochs",
        (2, 1)),
    "ablate_ubw_p_plot_is_a_folder": Case("ablate_ubw_p", ("--plot={folder}",),
                                          "--plot", "{folder}"),
    "alignment_transfer_defended": Case(
        "alignment_transfer", ("defense.name=dp_sgd",), "defense.name",
        "dp_sgd"),
    "alignment_transfer_given_ubw_c": Case(
        "alignment_transfer", (), "method", "ubw_c",
        "craft_poison.py:ubw_c,digits,runlocal"),
    "removal_clean_fraction_one": Case(
        "removal", ("removal.clean_fraction=1.0",), "removal.clean_fraction",
        1.0),
    "removal_unknown_column": Case(
        "removal", ("removal.columns=('wild_kl',)",), "removal.columns",
        ("wild_kl",)),
    "removal_pruning_rate_one": Case(
        "removal", ("removal.pruning_rates=(0.0,1.0)",),
        "removal.pruning_rates", (0.0, 1.0)),
    "removal_unknown_repair": Case(
        "removal", ("defenses.nad.repair=unlearning",), "defenses.nad.repair",
        "unlearning"),
    "removal_kind_is_not_the_row": Case(
        "removal", ("watermark.kind=noise",), "watermark.kind", "noise"),
    "removal_target_out_of_range": Case(
        "removal", ("watermark.target_label=10",), "watermark.target_label",
        10),
    "removal_adi_alpha": Case(
        "removal", ("watermark.alpha=1.5",), "watermark.alpha", 1.5,
        "removal.py:adi,digits,runlocal"),
    "removal_ubw_p_tau": Case(
        "removal", ("verify.tau=1.5",), "verify.tau", 1.5,
        "removal.py:ubw_p,digits,runlocal"),
    "alignment_transfer_epsilon_above_255": Case(
        "alignment_transfer", ("poison.epsilon=300",), "poison.epsilon", 300),
}


def _same(found: Any, expected: Any) -> bool:
  if isinstance(expected, float) and math.isnan(expected):
    return isinstance(found, float) and math.isnan(found)
  return found == expected


@pytest.fixture(scope="module", autouse=True)
def launcher_flags():
  if "output_json" not in flags.FLAGS:
    launch.define_flags("configs/train.py:digits,runlocal")


@pytest.fixture
def work_spies(monkeypatch):
  """Replaces training, crafting and DP-SGD; returns the calls they got."""
  calls = []

  def spy(name):
    def called(*args, **kwargs):
      del args, kwargs
      calls.append(name)
      raise AssertionError(f"{name} ran before the input was checked")
    return called

  monkeypatch.setattr(recipe, "train_model", spy("recipe.train_model"))
  monkeypatch.setattr(loop, "fit", spy("loop.fit"))
  monkeypatch.setattr(alignment, "craft", spy("alignment.craft"))
  monkeypatch.setattr(defenses, "train_model_dp_sgd", spy("dp_sgd"))
  return calls


@pytest.fixture
def places(tmp_path):
  """An existing file and folder, and paths where nothing exists yet."""
  existing_file = tmp_path / "a_file"
  existing_file.write_text("not a folder")
  return {"file": str(existing_file), "folder": str(tmp_path),
          "workdir": str(tmp_path / "work"),
          "output": str(tmp_path / "out" / "result.json")}


@contextlib.contextmanager
def _parsed(argv: list[str]):
  """The flags parsed from ``argv``, then reset. The ``--config.*``
  override flags that a parse defines are removed before and after, so
  that the next parse can define them again."""
  _remove_config_overrides()
  flags.FLAGS(argv)
  try:
    yield
  finally:
    flags.FLAGS.unparse_flags()
    _remove_config_overrides()


def _remove_config_overrides() -> None:
  for name in [name for name in flags.FLAGS if name.startswith("config.")]:
    delattr(flags.FLAGS, name)


def _argv(name: str, variant: str, args, places) -> list[str]:
  """The command line of launcher ``name`` with ``args`` (``--config.``
  implied for those without ``--``; ``{file}`` and the like filled in)."""
  args = [*BASE_OVERRIDES.get(name, ()), *args]
  return [name, f"--config={REPO}/configs/{variant}",
          f"--workdir={places['workdir']}",
          f"--output_json={places['output']}",
          *(arg.format(**places) if arg.startswith("--")
            else f"--config.{arg}" for arg in args)]


def _run_launcher(name: str, variant: str, args, places, monkeypatch):
  """Runs the launcher's main as the command line would; returns the
  ConfigError it raised."""
  module = importlib.import_module(f"experiments.{name}")
  argv = _argv(name, variant, args, places)
  monkeypatch.setattr(sys, "argv", argv)  # config overrides read sys.argv
  with _parsed(argv):
    with pytest.raises(ConfigError) as caught:
      module.main([name])
  return caught.value


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_launcher_refuses_before_any_work(case, places, work_spies,
                                          monkeypatch):
  error = _run_launcher(case.launcher, case.variant or LAUNCHERS[case.launcher],
                        case.args, places, monkeypatch)
  value = (case.value.format(**places) if isinstance(case.value, str)
           else case.value)
  named = [p for p in error.problems if p.field == case.field]
  assert named and _same(named[0].value, value), error.problems
  assert f"{case.field}={value!r}" in str(error)
  assert not work_spies
  assert not os.path.exists(places["workdir"])
  assert not os.path.exists(os.path.dirname(places["output"]))


def test_every_launcher_passes_its_runlocal_variant(places, work_spies,
                                                    monkeypatch):
  """The table's baselines are good configs: only the spies stop them."""
  for name, variant in LAUNCHERS.items():
    module = importlib.import_module(f"experiments.{name}")
    argv = _argv(name, variant, (), places)
    monkeypatch.setattr(sys, "argv", argv)
    with _parsed(argv):
      with pytest.raises(SystemExit):  # the spy fails the job
        module.main([name])
    with open(places["output"]) as f:
      written = json.load(f)
    assert written["status"] == "failed"
    assert "before the input" in written["error"]["message"]
  assert len(work_spies) == len(LAUNCHERS)


def test_every_problem_is_reported_at_once(places, work_spies, monkeypatch):
  error = _run_launcher(
      "craft_poison", LAUNCHERS["craft_poison"],
      ("poison.epsilon=-8", "watermark.poison_rate=1.5", "verify.tau=2.0",
       "train.num_epochs=0", "defense.noise_epsilon=0", "--workdir={file}",
       "--output_json={folder}"), places, monkeypatch)
  expected = {"poison.epsilon": -8, "watermark.poison_rate": 1.5,
              "verify.tau": 2.0, "train.num_epochs": 0,
              "defense.noise_epsilon": 0, "--workdir": places["file"],
              "--output_json": places["folder"]}
  assert {p.field: p.value for p in error.problems} == expected
  assert str(error).startswith("7 bad settings")
  # Epsilon in the config's units of 1/255, as typed, not converted.
  assert "poison.epsilon=-8: " in str(error) and "0.031" not in str(error)
  assert not work_spies


def test_evaluated_classes_must_be_poisoned_classes():
  config = dataset_watermark_configs.get_config("ubw_p,digits,runlocal")
  config.watermark.source_classes = (2, 3)
  problems = dataset_watermarks.verification(config)
  assert [problem.field for problem in problems] == ["verify.source_classes"]
  assert "holds classes [0] that watermark.source_classes=(2, 3) does not " \
      "poison" in problems[0].fix
  config.verify.source_classes = (3,)
  assert not dataset_watermarks.verification(config)


def test_train_model_checks_its_recipe_before_building(work_spies):
  """Library users get the check too: batch size 0 was a ZeroDivisionError."""
  config = train_configs.get_config("digits,runlocal")
  config.train.batch_size = 0
  config.train.num_epochs = -1
  with pytest.raises(ConfigError) as caught:
    _TRAIN_MODEL(config, loaders.load("digits", "test"))
  assert [(p.field, p.value) for p in caught.value.problems] == [
      ("train.batch_size", 0), ("train.num_epochs", -1)]
  assert not work_spies


class _Suspect:
  """A black-box model that records whether it was ever queried."""

  def __init__(self, num_classes: int):
    self.num_classes = num_classes
    self.queries = 0

  def __call__(self, images):
    self.queries += 1
    return np.full((len(images), self.num_classes), 1 / self.num_classes)


@pytest.fixture(scope="module")
def ownership_key():
  test = loaders.load("digits", "test")
  key = poisoned_label.mark(test, {"method": "badnets", "poison_rate": 0.1},
                            jax.random.key(0))[1]
  return key, test


@pytest.mark.parametrize("arguments, field, value", [
    ({"tau": 1.5}, "tau", 1.5),
    ({"tau": -0.25}, "tau", -0.25),
    ({"tau": math.nan}, "tau", math.nan),
    ({"m": 1}, "m", 1),
    ({"m": 2.5}, "m", 2.5),
    ({"batch_size": 0}, "batch_size", 0),
], ids=["tau_above_one", "negative_tau", "nan_tau", "m_one", "m_not_integer",
        "batch_size_zero"])
def test_dataset_ownership_refuses_before_querying(ownership_key, arguments,
                                                   field, value):
  key, test = ownership_key
  suspect = _Suspect(test.num_classes)
  with pytest.raises(ConfigError) as caught:
    ownership.verify_dataset_ownership(suspect, key, test,
                                               **arguments)
  (problem,) = caught.value.problems
  assert problem.field == field and _same(problem.value, value)
  assert f"{field}={value!r}" in str(caught.value)
  assert suspect.queries == 0


@pytest.mark.parametrize("alpha", [0.0, 1.5, -0.01, math.inf])
def test_adi_verify_refuses_alpha_before_querying(alpha):
  marking_key, verification_key = adi.keygen(10, 10, (8, 8, 1), seed=0)
  suspect = _Suspect(10)
  with pytest.raises(ConfigError, match=f"alpha={alpha!r}: "):
    adi.verify(marking_key, verification_key, suspect, alpha=alpha)
  with pytest.raises(ConfigError, match=f"alpha={alpha!r}: "):
    adi.decide_agreement(marking_key.triggers, suspect, 10, alpha=alpha)
  assert suspect.queries == 0
