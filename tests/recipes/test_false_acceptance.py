"""The false-acceptance experiment: the exact size of the binomial test."""

import numpy as np
import pytest
from scipy import stats

from configs import model_watermark as model_configs
from jaxwm.recipes import false_acceptance


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
