"""The false-acceptance experiment: the exact size of the binomial test,
and every verifier end to end, sequential and as ensembles."""

import glob
import json
import os

import numpy as np
import pytest
from scipy import stats

from configs import false_acceptance as false_acceptance_configs
from configs import model_watermark as model_configs
from jaxwm import monitor
from jaxwm.config_checks import model_watermarks
from jaxwm.models import registry
from jaxwm.recipes import false_acceptance
from jaxwm.recipes import false_acceptance_rates
from jaxwm.recipes import false_acceptance_ttests
from jaxwm.verify.levels import REJECT

import tiny

MLP = "false_acceptance_tests_mlp"


def test_exact_size_hand_worked():
  # n = 100, K = 10: P[X >= 18] = 0.01001 > 0.01, so Verify accepts from 19
  # agreements on and its size is P[X >= 19].
  assert stats.binom.sf(17, 100, 0.1) > 0.01
  assert false_acceptance.exact_size(100, 0.1, 0.01) == pytest.approx(
      stats.binom.sf(18, 100, 0.1), rel=1e-12)
  # n = 10, chance 1/2: P[X >= 10] = 2^-10 is the only tail below 0.005.
  assert false_acceptance.exact_size(10, 0.5, 0.005) == pytest.approx(2**-10)
  assert false_acceptance.exact_size(3, 0.5, 0.1) == 0.0


def test_exact_size_of_the_paper_rule_hand_worked():
  # n = 10 at chance 1/2, eps = 0.1: at most 1 disagreement, so
  # P[X >= 9] = (10 + 1) / 1024.
  assert false_acceptance.exact_size_threshold(10, 0.5, 0.1) == (
      pytest.approx(11 / 1024, rel=1e-12))
  # n = 100, K = 10, eps = 0.1: P[X >= 90], about 6e-78.
  assert false_acceptance.exact_size_threshold(100, 0.1, 0.1) == (
      pytest.approx(stats.binom.sf(89, 100, 0.1), rel=1e-12))
  assert false_acceptance.exact_size_threshold(100, 0.1, 0.0) == (
      pytest.approx(1e-100, rel=1e-9))


def test_upper_bound_hand_worked():
  # No acceptance among n: the bound solves (1 - p)^n = 0.05.
  assert false_acceptance_rates.upper_95(0, 100) == pytest.approx(
      1 - 0.05 ** (1 / 100), rel=1e-9)
  assert false_acceptance_rates.upper_95(4, 4) == 1.0
  # x of n: the 95% quantile of Beta(x + 1, n - x); 2 of 200 is the Adi
  # run's 0.031 in docs/results.md.
  assert false_acceptance_rates.upper_95(2, 200) == pytest.approx(
      stats.beta.ppf(0.95, 3, 198), rel=1e-6)
  assert false_acceptance_rates.acceptance(1, 4, "_t") == {
      "false_acceptance_rate_t": 0.25, "accepted_t": 1,
      "rate_upper_95_t": pytest.approx(stats.beta.ppf(0.95, 2, 3),
                                       rel=1e-6)}


def test_log10_quantiles_hand_worked():
  assert false_acceptance_rates.log10_quantiles([-3.0, -2.0, -1.0, 0.0]) == {
      "min": -3.0, "q05": pytest.approx(-2.85), "q25": -2.25,
      "median": -1.5, "q75": -0.75, "max": 0.0}


def _rates_agree(first: dict, second: dict, rule: str) -> bool:
  """Whether two acceptance rates differ by at most three standard errors
  of their difference (pooled binomial; 0 when both accept none)."""
  accepted = first[f"accepted_{rule}"] + second[f"accepted_{rule}"]
  models = first["models"] + second["models"]
  pooled = accepted / models
  error = np.sqrt(pooled * (1 - pooled) *
                  (1 / first["models"] + 1 / second["models"]))
  return abs(first[f"false_acceptance_rate_{rule}"] -
             second[f"false_acceptance_rate_{rule}"]) <= 3 * error


def test_ensemble_mode_trains_the_same_models(tmp_path):
  config = model_configs.get_config("false_acceptance,digits,runlocal")
  config.false_acceptance.num_models = 4
  config.train.num_epochs = 2
  config.model_kwargs.width = 4
  sequential = false_acceptance.run_experiment(config, str(tmp_path / "seq"))
  config.false_acceptance.ensemble_size = 4
  ensembled = false_acceptance.run_experiment(config, str(tmp_path / "ens"))
  seq, ens = sequential["metrics"], ensembled["metrics"]
  assert seq["models"] == ens["models"] == 4
  # The members are the sequential models: the same test accuracy (359
  # test images, 4 models: one changed prediction moves it by 7e-4).
  assert ens["benign_accuracy"] == pytest.approx(seq["benign_accuracy"],
                                                 abs=1e-3)
  assert ens["benign_accuracy"] > 0.2  # they learnt something
  for rule in ("binomial", "threshold"):
    assert _rates_agree(seq, ens, rule)


@pytest.fixture(scope="module", autouse=True)
def _mlp_registered():
  registry.register(MLP, tiny.Mlp)


def test_the_verifiers_are_named_alike_everywhere():
  assert set(false_acceptance.VERIFIERS) == set(
      model_watermarks.VERIFIERS) == set(
          false_acceptance_configs.VERIFIERS.values())


def test_the_adi_variant_is_the_model_watermark_one():
  assert false_acceptance_configs.get_config("adi,digits,runlocal") == (
      model_configs.get_config("false_acceptance,digits,runlocal"))


@pytest.mark.parametrize("variant, named", [
    ("binomial,digits", "must start with one of adi, dataset"),
    ("dataset,label_consistent,digits", "must name a poisoned-label"),
])
def test_a_bad_variant_is_refused(variant, named):
  with pytest.raises(ValueError, match=named):
    false_acceptance_configs.get_config(variant)


def test_a_run_of_unverifiable_models_states_why_it_has_no_rate(tmp_path):
  pytest.importorskip("matplotlib")
  verifier = false_acceptance_ttests.TTestVerifier((), 0, None, None, 0.01)
  unverified = {"seed": 0, "architecture": "benign", "test_accuracy": 0.1,
                "error": "only 1 of the 36 test images is right"}
  metrics = verifier.summary([unverified])
  assert (metrics["models"], metrics["verified"]) == (1, 0)
  assert "no model could be verified" in (
      metrics["false_acceptance_rate"]["error"])
  assert "log10_p_value" not in metrics
  log = monitor.RunLog(pictures_dir=str(tmp_path))
  with monitor.recording(log):
    verifier.picture([unverified])  # nothing to draw
    assert log.written == []
    verifier.picture([unverified, {"p_value": 0.3, "log10_p_value": -0.52}])
  assert log.written == [str(tmp_path / "p_values.png")]


def _verdicts(workdir: str) -> list[dict]:
  """The run's verdicts in model order (the cached files' values)."""
  [folder] = glob.glob(os.path.join(workdir, "verdicts-*"))
  count = len(os.listdir(folder))
  values = []
  for index in range(count):
    with open(os.path.join(folder, f"model-{index}.json")) as f:
      values.append(json.load(f)["value"])
  return values


def _check_rate(metrics: dict, models: int) -> None:
  """A rate in [0, 1] over the verified models, at most its upper bound."""
  assert metrics["models"] == models
  assert 1 <= metrics["verified"] <= models
  rate = metrics["false_acceptance_rate"]
  assert rate == metrics["accepted"] / metrics["verified"]
  assert 0.0 <= rate <= metrics["rate_upper_95"] <= 1.0
  quantiles = metrics["log10_p_value"]
  assert quantiles["min"] <= quantiles["median"] <= quantiles["max"] <= 0.0


def _same_verdicts(first: list[dict], second: list[dict]) -> None:
  """The same models (seeds, architectures) with the same decisions and
  p-values (up to the floating-point order of an ensemble's sums)."""
  assert [(v["seed"], v["architecture"]) for v in first] == [
      (v["seed"], v["architecture"]) for v in second]
  for one, other in zip(first, second):
    assert ("error" in one) == ("error" in other)
    if "error" not in one:
      assert one["decision"] == other["decision"]
      assert one["log10_p_value"] == pytest.approx(other["log10_p_value"],
                                                   rel=1e-3, abs=1e-6)
    assert one["test_accuracy"] == pytest.approx(other["test_accuracy"],
                                                 abs=1e-2)


def _config(variant: str, models: int):
  config = false_acceptance_configs.get_config(variant)
  config.model, config.model_kwargs = MLP, {}
  config.false_acceptance.num_models = models
  return config


def test_dataset_verifier_end_to_end_sequential_and_ensembled(tmp_path):
  config = _config("dataset,badnets,digits,runlocal", 2)
  config.train_fraction = 1.0  # models that learn: the test needs right
  config.train.num_epochs = 2  # answers on the triggered images
  workdir = str(tmp_path / "seq")
  sequential = false_acceptance.run_experiment(config, workdir)["metrics"]
  _check_rate(sequential, 2)
  assert sequential["alpha"] == config.verify.alpha
  assert sequential["benign_accuracy"] > 0.5
  verdicts = _verdicts(workdir)
  assert [v["seed"] for v in verdicts] == [0, 1]
  decided = [v for v in verdicts if "error" not in v]
  assert sequential["accepted"] == sum(v["decision"] == REJECT
                                       for v in decided)
  # A rerun resumes from the verdicts.
  assert false_acceptance.run_experiment(config, workdir)["metrics"] == (
      sequential)
  config.false_acceptance.ensemble_size = 2
  ensembled_dir = str(tmp_path / "ens")
  ensembled = false_acceptance.run_experiment(config, ensembled_dir)
  _check_rate(ensembled["metrics"], 2)
  _same_verdicts(verdicts, _verdicts(ensembled_dir))


def test_move_verifier_end_to_end_sequential_and_ensembled(tmp_path):
  config = _config("move_whitebox,digits,runlocal", 2)
  config.meta.num_models = 1  # the fewest reference models per architecture
  config.meta.num_references = 2
  workdir = str(tmp_path)
  sequential = false_acceptance.run_experiment(config, workdir)["metrics"]
  _check_rate(sequential, 2)
  assert sequential["alpha"] == config.move.alpha
  assert sequential["method"]["setting"] == "white_box"
  assert 0.0 <= sequential["method"][
      "meta_classifier_held_out_accuracy"] <= 1.0
  verdicts = _verdicts(workdir)
  # Both architectures, seeds after the owner's, on the attacker half.
  first = config.seed + config.independent.seed_offset
  assert [(v["seed"], v["architecture"]) for v in verdicts] == [
      (first, "victim"), (first + 1, "independent")]
  for role, entry in sequential["by_architecture"].items():
    assert entry["models"] == 1, role
    assert 0.0 <= entry["false_acceptance_rate"] <= entry["rate_upper_95"]
  # The same models as one-member ensembles per architecture, verified by
  # the owner restored from the workdir.
  [folder] = glob.glob(os.path.join(workdir, "verdicts-*"))
  os.rename(folder, os.path.join(workdir, "sequential"))
  config.false_acceptance.ensemble_size = 1
  ensembled = false_acceptance.run_experiment(config, workdir)["metrics"]
  _check_rate(ensembled, 2)
  _same_verdicts(verdicts, _verdicts(workdir))
