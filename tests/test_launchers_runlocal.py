"""Every ``runlocal`` variant of every launcher, end to end, in-process.

Each job runs through :func:`jaxwm.launch.run_job` (what the launchers run
after parsing their flags) and must write a results JSON with status "ok",
or "partial" only where a value honestly cannot be computed on a one-epoch
digits model (a verification scenario or ASR-C over no correctly classified
image), with the metrics its launcher promises. The launchers of one config
file share a workdir, so later variants reuse the models of earlier ones,
and every model is a small MLP registered here (the CNN compiles several
times slower; the models' own tests cover it). The last tests run a
diverging job through a launcher's command line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from typing import Any, Callable

import pytest
from absl import flags

from configs import craft_poison as craft_configs
from configs import dataset_watermark as dataset_configs
from configs import false_acceptance as false_acceptance_configs
from configs import model_stealing as stealing_configs
from configs import model_watermark as model_configs
from configs import removal as removal_configs
from configs import train as train_configs
from experiments import train as train_launcher
from jaxwm import launch
from jaxwm.models import registry
from jaxwm.recipes import ablate_ubw_p
from jaxwm.recipes import alignment_transfer
from jaxwm.recipes import craft_poison
from jaxwm.recipes import dataset_watermark
from jaxwm.recipes import false_acceptance
from jaxwm.recipes import model_stealing
from jaxwm.recipes import model_watermark
from jaxwm.recipes import removal
from jaxwm.recipes import train as train_recipe
from jaxwm.train import recipe
from jaxwm.train.checkpoint import Checkpointer

import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = "runlocal_tests_mlp"
# The model-stealing methods verified by the dataset watermark's t-test.
DATASET_WATERMARK_METHODS = ("badnets", "gradient_matching")
# The model-stealing case of badnets runs all six attacks; the other
# methods' cases run one attack that copies the victim's weights and one
# that queries it (tests/steal/test_attacks.py tests every attack).
STEALING_ATTACKS_SAMPLE = ("direct_copy", "distillation")
# What a one-epoch digits model may honestly leave uncomputed.
UNDEFINED_ON_DIGITS = ("metrics.verification.", "metrics.asr_c",
                       "metrics.all_classes.verification.",
                       "metrics.all_classes.asr_c")
VERDICT = {"watermark_accuracy", "p_value", "log10_p_value",
           "accepted_binomial", "accepted_threshold", "alpha", "eps",
           "decision"}


def _check_verification(metrics: dict[str, Any], config,
                        incomplete: dict[str, str], prefix: str = "metrics",
                        extra: tuple[str, ...] = ()) -> None:
  """Each scenario has a decided test result or its stated reason."""
  alpha = config.verify.alpha
  assert set(metrics["verification"]) == {
      "independent_t", "independent_m", "malicious", *extra}
  for name, entry in metrics["verification"].items():
    if "error" in entry:
      assert incomplete[f"{prefix}.verification.{name}"] == entry["error"]
      assert name not in metrics["p_value"]
      continue
    assert entry["alpha"] == alpha and entry["m"] >= 2
    assert 0.0 < entry["p_value"] <= 1.0
    assert entry["decision"] == ("reject_h0" if entry["p_value"] < alpha
                                 else "fail_to_reject_h0")
    assert metrics["p_value"][name] == entry["p_value"]


def _check_dataset_watermark(metrics: dict[str, Any], config,
                             incomplete: dict[str, str]) -> None:
  """The paper's evaluation (source class 0) and every class, each with
  the three scenarios and the independent-trigger model."""
  extra = ("independent_trigger_model",)
  _check_verification(metrics, config, incomplete, extra=extra)
  _check_verification(metrics["all_classes"], config, incomplete,
                      "metrics.all_classes", extra)
  assert metrics["source_classes"] == [0]
  assert 0 in metrics["all_classes"]["source_classes"]
  assert len(metrics["all_classes"]["source_classes"]) >= 9


def _check_curves(metrics: dict[str, Any], config, incomplete) -> None:
  del incomplete
  assert set(metrics["curves"]) == set(config.ablation.arms)
  for points in metrics["curves"].values():
    assert [p["epochs"] for p in points] == list(config.ablation.epochs)


def _check_model_watermark(metrics: dict[str, Any], config,
                           incomplete) -> None:
  del incomplete
  assert VERDICT <= set(metrics["unmarked"])
  assert 0.0 < metrics["p_value"] <= 1.0
  assert (metrics["alpha"], metrics["eps"]) == (0.01, 0.1)
  # The paper's rule at eps = 0.1 on 20 triggers: at most 2 disagree.
  assert metrics["accepted_threshold"] == (
      metrics["watermark_accuracy"] >= 0.9)
  for value in (metrics["benign_accuracy"], metrics["watermark_accuracy"],
                metrics["benign_accuracy_unmarked"]):
    assert 0.0 <= value <= 1.0
  # The paper's attacker: as many images, epochs and steps as the owner.
  budget = metrics["attack_budget"]
  assert abs(budget["attacker_images"] - budget["owner_images"]) <= 10
  assert budget["attacker_epochs"] == budget["owner_epochs"] == (
      config.train.num_epochs)
  assert budget["attacker_steps"] == budget["attacker_images"] // (
      config.train.batch_size) * config.train.num_epochs
  assert set(metrics["removal"]) == set(config.attack.names)
  for attack in metrics["removal"].values():
    assert {"test_accuracy"} | VERDICT == set(attack)
  assert ("piracy" in metrics) == config.piracy.enabled
  assert ("transfer" in metrics) == config.transfer.enabled
  if config.piracy.enabled:
    piracy = metrics["piracy"]
    for party in ("owner", "pirate", "pirate_on_released_model"):
      assert VERDICT == set(piracy[party])
    assert set(piracy["after"]) == set(config.piracy.attacks)
    for attack in piracy["after"].values():
      assert set(attack) == {"test_accuracy", "owner", "pirate"}
  if config.transfer.enabled:
    assert {"dataset", "test_accuracy"} | VERDICT == set(metrics["transfer"])


VERDICT_FIELDS = {"statistic", "dof", "p_value", "log10_p_value", "delta_p",
                  "m", "alpha", "decision"}


def _check_stealing_entry(entry: dict[str, Any], m: int,
                          alpha: float) -> None:
  """A suspect's accuracy, agreement, queries and decided verdict (on at
  most ``m`` images: BadNets' test uses those the suspect gets right)."""
  assert {"test_accuracy", "agreement", "queries"} | VERDICT_FIELDS <= set(
      entry)
  assert 0.0 <= entry["test_accuracy"] <= 1.0
  assert 0.0 <= entry["agreement"] <= 1.0
  assert 0.0 < entry["p_value"] <= 1.0 and 2 <= entry["m"] <= m
  # MOVE keeps its test's decision apart; its controls may overrule it.
  tested = entry.get("test_decision", entry["decision"])
  assert tested == ("reject_h0" if entry["p_value"] < alpha
                    else "fail_to_reject_h0")
  assert entry["decision"] in (tested, "inconclusive")


def _verification_size(config) -> tuple[int, float]:
  """(m, alpha) of the method's test."""
  if config.method in DATASET_WATERMARK_METHODS:
    return config.verify.m, config.verify.alpha
  if config.method == "entangled":
    return config.entangled.m, config.entangled.alpha
  if config.method in stealing_configs.DATASET_INFERENCE_METHODS:
    block = config.dataset_inference
    return block.m, block.alpha
  move = config.move
  return (move.m_white_box if move.setting == "white_box"
          else move.m_black_box), move.alpha


def _check_model_stealing(metrics: dict[str, Any], config,
                          incomplete) -> None:
  del incomplete
  m, alpha = _verification_size(config)
  split = metrics["split"]
  assert abs(split["owner_images"] - split["attacker_images"]) <= 10
  assert metrics["accuracy_drop"] == pytest.approx(
      metrics["benign_accuracy"] - metrics["victim_accuracy"])
  assert metrics["alpha"] == alpha
  assert set(metrics["attacks"]) == set(config.attacks)
  for name, entry in [*metrics["attacks"].items(),
                      ("independent", metrics["independent"])]:
    assert ("test_decision" in entry) == (
        config.method in stealing_configs.MOVE_METHODS)
    if "error" in entry:
      # A dataset watermark cannot test a suspect that gets too few
      # triggered test images right (a smoke run's zero-shot student);
      # the victim's own copy always can be.
      assert config.method in DATASET_WATERMARK_METHODS
      assert name != "direct_copy" and "correctly" in entry["error"]
    else:
      _check_stealing_entry(entry, m, alpha)
  queries = {name: entry["queries"]
             for name, entry in metrics["attacks"].items()}
  zero_shot = config.steal.zero_shot
  expected = {
      "direct_copy": 0, "zero_shot": zero_shot.iterations * (
          zero_shot.student_steps + 1) * zero_shot.batch_size,
      **{name: split["attacker_images"] for name in (
          "distillation", "fine_tuning", "label_query", "logit_query")}}
  assert queries == {name: expected[name] for name in config.attacks}
  assert metrics["attacks"]["direct_copy"]["agreement"] == 1.0
  assert metrics["independent"]["queries"] == 0


TTEST_FALSE_ACCEPTANCE_METRICS = frozenset({
    "alpha", "models", "verified", "false_acceptance_rate", "accepted",
    "rate_upper_95", "log10_p_value", "benign_accuracy"})


def _check_ttest_false_acceptance(metrics: dict[str, Any], config,
                                  incomplete) -> None:
  """A rate over the verified models, within its upper bound; with MOVE,
  half the models of each architecture."""
  models = config.false_acceptance.num_models
  assert metrics["models"] == models
  if "metrics.false_acceptance_rate" in incomplete:
    assert metrics["verified"] == 0
    return
  assert 0.0 <= metrics["false_acceptance_rate"] <= (
      metrics["rate_upper_95"]) <= 1.0
  assert metrics["accepted"] <= metrics["verified"] <= models
  if config.false_acceptance.verifier == "move":
    assert {role: entry["models"] for role, entry in
            metrics["by_architecture"].items()} == {
                "victim": models // 2, "independent": models // 2}
    assert metrics["method"]["setting"] == config.move.setting


@dataclasses.dataclass(frozen=True)
class Case:
  """One launcher variant and what its results must hold."""

  experiment: str
  run_fn: Callable[..., Any]
  get_config: Callable[[str], Any]
  variant: str
  workdir: str  # shared by the cases of one config file
  promised: frozenset[str]
  may_be_undefined: tuple[str, ...] = ()
  check: Callable[..., None] | None = None
  # The model trained; None keeps the config's (the removal launcher's
  # pruning, NAD and Grad-CAM need a convolution: a CNN of width 4).
  model: str | None = MODEL
  overrides: tuple[tuple[str, Any], ...] = ()

  def param(self):
    return pytest.param(self, id=f"{self.experiment}:{self.variant}")


DATASET_METRICS = frozenset({
    "benign_accuracy", "asr_a", "asr_c", "d_p", "d_s", "d_c",
    "top_class_share", "benign_accuracy_no_watermark", "verification",
    "p_value", "delta_p", "poison_rate", "watermark_key_digest",
    "source_classes", "all_classes"})
POISON_METRICS = frozenset({"poison_key_digest", "poisoned_samples",
                            "test_accuracy", "clean_test_accuracy"})
CRAFTED_WATERMARK_METRICS = frozenset({
    "poison_key_digest", "poisoned_samples", "crafting_objective",
    "benign_accuracy", "asr_a", "asr_c", "d_p", "d_s", "d_c",
    "benign_accuracy_clean_model", "asr_a_clean_model", "d_p_clean_model",
    "verification", "p_value", "delta_p"})
MODEL_METRICS = frozenset({
    "benign_accuracy", "benign_accuracy_unmarked", "accuracy_drop",
    "unmarked", "removal", "verification_key_digest", "alpha", "eps",
    "attack_budget"}) | VERDICT

def _check_removal(metrics: dict[str, Any], config, incomplete) -> None:
  """A cell per column, each with its verification or the reason it could
  not be run; a curve per curved column; the detectors the row's watermark
  allows; the figures exist."""
  watermarked = config.row != "benign"
  columns = ["none", *config.removal.columns] if watermarked else ["none"]
  assert metrics["columns"] == list(metrics["cells"]) == columns
  for column, cell in metrics["cells"].items():
    assert 0.0 <= cell["benign_accuracy"] <= 1.0
    if not watermarked:
      assert set(cell) == {"benign_accuracy"}
      continue
    verification = cell["verification"]
    if "error" in verification:  # too few right answers after one epoch
      path = f"metrics.cells.{column}.verification"
      assert incomplete[path] == verification["error"]
      continue
    assert 0.0 < verification["p_value"] <= 1.0
    assert verification["decision"] == (
        "reject_h0" if verification["p_value"] < verification["alpha"]
        else "fail_to_reject_h0")
  for column, points in metrics["curves"].items():
    abscissa = "rate" if column == "pruning" else "epoch"
    expected = (list(config.removal.pruning_rates) if column == "pruning"
                else list(range(config.defenses[column].settings.num_epochs
                                + 1)))
    assert [point[abscissa] for point in points] == expected
  assert set(metrics["curves"]) == {
      c for c in columns if c.startswith(("fine_tuning", "wild", "pruning"))}
  dataset_watermark_row = config.row in ("badnets", "ubw_p", "ubw_c")
  detectors = metrics["detectors"]
  assert len(detectors["neural_cleanse"]["anomaly_index"]) == 10
  assert (detectors["strip"] is not None) == dataset_watermark_row
  assert (detectors["spectral_signatures"] is not None) == (
      dataset_watermark_row)
  if watermarked:  # the matrix of the rows measured in the workdir
    assert "heatmap" in metrics["figures"]
  for path in metrics["figures"].values():
    assert os.path.getsize(path) > 0


# Every removal row; on one model watermark and one dataset watermark the
# defenses of each kind (curves over epochs, over pruning rates, a repair
# without a curve; NAD and MCR, the costliest, are tested in
# tests/defenses), none on the others (their rows' models and detectors
# only). The rows whose detectors need no convolution (Neural Cleanse
# alone) train the MLP.
REMOVAL_COLUMNS = {"content": ("fine_tuning_all", "wild_ce", "fine_pruning"),
                   "badnets": ("fine_tuning_fc", "pruning")}
REMOVAL_MLP_ROWS = ("adi", "noise", "unrelated", "benign")
# Their paired t-test may find too few right answers after one epoch.
REMOVAL_DATASET_ROWS = ("badnets", "ubw_p", "ubw_c")

CASES = [
    Case("train", train_recipe.train_and_evaluate, train_configs.get_config,
         "digits,runlocal", "train",
         frozenset({"benign_accuracy", "test_loss", "train_examples"})),
    *(Case("dataset_watermark", dataset_watermark.run_experiment,
           dataset_configs.get_config, f"{method},digits,runlocal",
           "dataset_watermark", DATASET_METRICS, UNDEFINED_ON_DIGITS,
           _check_dataset_watermark)
      for method in dataset_configs.METHODS),
    Case("ablate_ubw_p", ablate_ubw_p.run_ablation,
         dataset_configs.get_config, "ubw_p,digits,runlocal",
         "dataset_watermark", frozenset({"curves"}), check=_check_curves),
    *(Case("craft_poison", craft_poison.run_experiment,
           craft_configs.get_config, f"{method},digits,runlocal",
           "craft_poison", POISON_METRICS)
      for method in craft_configs.AVAILABILITY),
    *(Case("craft_poison", craft_poison.run_experiment,
           craft_configs.get_config, f"{method},digits,runlocal",
           "craft_poison", CRAFTED_WATERMARK_METRICS, UNDEFINED_ON_DIGITS,
           _check_verification)
      for method in craft_configs.WATERMARKS),
    Case("alignment_transfer", alignment_transfer.run_transfer,
         craft_configs.get_config, "availability,digits,runlocal",
         "craft_poison", frozenset({"surrogate", "curve"})),
    *(Case("model_watermark", model_watermark.run_experiment,
           model_configs.get_config, f"{mode},digits,runlocal",
           "model_watermark", MODEL_METRICS, check=_check_model_watermark)
      for mode in ("adi_fromscratch", "adi_pretrained")),
    *(Case("removal", removal.run_experiment, removal_configs.get_config,
           f"{row},digits,runlocal", "removal",
           frozenset({"row", "success_metric", "clean_images", "columns",
                      "cells", "curves", "detectors", "figures"}),
           may_be_undefined=(("metrics.cells.", "metrics.curves.")
                             if row in REMOVAL_DATASET_ROWS else ()),
           check=_check_removal,
           model=MODEL if row in REMOVAL_MLP_ROWS else None,
           overrides=(("removal.columns",
                       REMOVAL_COLUMNS.get(row, ())),))
      for row in removal_configs.ROWS),
    Case("false_acceptance", false_acceptance.run_experiment,
         model_configs.get_config, "false_acceptance,digits,runlocal",
         "model_watermark",
         frozenset({"models", "alpha", "eps", "mean_agreement",
                    "benign_accuracy"} | {
                        f"{name}_{rule}" for rule in ("binomial", "threshold")
                        for name in ("false_acceptance_rate", "accepted",
                                     "exact_size", "rate_upper_95")})),
    *(Case("false_acceptance", false_acceptance.run_experiment,
           false_acceptance_configs.get_config, f"{variant},digits,runlocal",
           workdir, TTEST_FALSE_ACCEPTANCE_METRICS | (
               {"by_architecture", "method"} if variant.startswith("move")
               else set()),
           ("metrics.false_acceptance_rate",
            "metrics.by_architecture."), _check_ttest_false_acceptance)
      # move_whitebox runs end to end, sequentially and as ensembles, in
      # tests/recipes/test_false_acceptance.py.
      for variant, workdir in (("dataset,ubw_p", "dataset_watermark"),
                               ("move_blackbox", "model_stealing"))),
    *(Case("model_stealing", model_stealing.run_experiment,
           stealing_configs.get_config, f"{method},digits,runlocal",
           "model_stealing", frozenset({
               "split", "victim_accuracy", "benign_accuracy",
               "accuracy_drop", "alpha", "method", "attacks",
               "independent"}), check=_check_model_stealing,
           may_be_undefined=(
               ("metrics.attacks.", "metrics.independent")
               if method in DATASET_WATERMARK_METHODS else ()),
           overrides=(() if method == "badnets" else
                      (("attacks", STEALING_ATTACKS_SAMPLE),)))
      for method in stealing_configs.METHODS),
]


@pytest.fixture(scope="module", autouse=True)
def _mlp_registered():
  registry.register(MODEL, tiny.Mlp)


@pytest.fixture(scope="module")
def shared_workdirs(tmp_path_factory):
  """One workdir per config file, created on first use."""
  root = tmp_path_factory.mktemp("runlocal")
  return lambda name: str(root / name)


def test_every_launcher_variant_is_covered():
  covered = {(case.experiment, case.variant.split(",")[0])
             for case in CASES}
  assert {v for e, v in covered if e == "dataset_watermark"} == set(
      dataset_configs.METHODS)
  assert {v for e, v in covered if e == "craft_poison"} == set(
      craft_configs.METHODS)
  assert {case.variant.split(",")[0] for case in CASES
          if case.get_config is model_configs.get_config} == set(
              model_configs.MODES)
  # The adi variant is model_watermark.py's false_acceptance variant.
  assert {case.variant.split(",")[0] for case in CASES
          if case.get_config is false_acceptance_configs.get_config} == (
              set(false_acceptance_configs.VARIANTS) -
              {"adi", "move_whitebox"})
  assert {v for e, v in covered if e == "removal"} == set(
      removal_configs.ROWS)
  assert {v for e, v in covered if e == "model_stealing"} == set(
      stealing_configs.METHODS)
  launchers = {name[:-3] for name in os.listdir(os.path.join(REPO,
                                                             "experiments"))
               if name.endswith(".py") and name != "__init__.py"}
  # The report runs no config: it rebuilds the docs' tables from JSONs
  # (tests/recipes/test_report.py).
  assert {case.experiment for case in CASES} == launchers - {"report"}


@pytest.mark.parametrize("case", [case.param() for case in CASES])
def test_runlocal_variant_writes_its_results(case, shared_workdirs,
                                             tmp_path):
  config = case.get_config(case.variant)
  if case.model is not None:
    config.model = case.model
    config.model_kwargs = {}  # the stand-in's own defaults
  config.update_from_flattened_dict(dict(case.overrides))
  output = tmp_path / "results.json"
  written = launch.run_job(case.experiment, case.run_fn, config,
                           workdir=shared_workdirs(case.workdir),
                           output_json=str(output),
                           command=f"{case.experiment} {case.variant}")
  assert json.loads(output.read_text()) == written
  assert written["error"] is None, written["error"]["traceback"]
  assert written["status"] in ("ok", "partial")
  assert (written["status"] == "partial") == bool(written["incomplete"])
  for path, reason in written["incomplete"].items():
    assert path.startswith(case.may_be_undefined), (path, reason)
    assert reason
  metrics = written["metrics"]
  assert case.promised <= set(metrics), case.promised - set(metrics)
  assert (written["experiment"], written["dataset"], written["model"],
          written["seed"]) == (case.experiment, "digits", config.model, 0)
  assert written["command"] == f"{case.experiment} {case.variant}"
  if case.check is not None:
    case.check(metrics, config, written["incomplete"])


def _forget_config_overrides() -> None:
  """Removes the ``--config.*`` flags an earlier parse defined (parsing
  defines them anew)."""
  for name in [n for n in flags.FLAGS if n.startswith("config.")]:
    delattr(flags.FLAGS, name)


@pytest.fixture
def launcher_flags(monkeypatch):
  """Parses a launcher's argv as ``app.run`` would; yields the parser."""
  if "output_json" not in flags.FLAGS:
    launch.define_flags(os.path.join(REPO, "configs/train.py"))
  _forget_config_overrides()

  def parse(argv: list[str]) -> None:
    monkeypatch.setattr(sys, "argv", argv)  # config overrides read sys.argv
    flags.FLAGS(argv)

  yield parse
  flags.FLAGS.unparse_flags()
  _forget_config_overrides()


def test_a_diverged_run_still_writes_its_results_and_exits_non_zero(
    launcher_flags, tmp_path, capsys):
  output = tmp_path / "out" / "diverged.json"
  launcher_flags([
      "train", f"--config={REPO}/configs/train.py:digits,runlocal",
      f"--config.model={MODEL}", "--config.train.learning_rate=1e8",
      "--config.train.num_epochs=3", f"--workdir={tmp_path / 'work'}",
      f"--output_json={output}"])
  with pytest.raises(SystemExit) as exited:
    train_launcher.main(["train"])
  assert exited.value.code == 1
  written = json.loads(output.read_text())
  assert written["status"] == "failed"
  assert written["error"]["type"] == "TrainingDivergedError"
  assert "learning rate" in written["error"]["message"]
  assert "train.learning_rate" in written["error"]["message"]
  # What was measured before the failure is kept.
  train, _ = recipe.load_datasets(train_configs.get_config("digits,runlocal"))
  assert written["metrics"] == {"train_examples": len(train)}
  assert written["config"]["train"]["learning_rate"] == 1e8
  assert "--config.train.learning_rate=1e8" in written["command"]
  # No model of the diverged epoch was checkpointed.
  step = int(re.search(r"at step (\d+)", written["error"]["message"])[1])
  checkpointer = Checkpointer(str(tmp_path / "work" / "model"))
  try:
    assert (checkpointer.latest_step() or 0) < step
  finally:
    checkpointer.close()
  out = capsys.readouterr().out
  assert out.startswith("train: failed")
  assert "TrainingDivergedError" in out
