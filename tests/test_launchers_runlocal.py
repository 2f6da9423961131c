"""Every ``runlocal`` variant of every launcher, end to end, in-process.

Each job runs through :func:`jaxwm.launch.run_job` (what the launchers run
after parsing their flags) and must write a results JSON with status "ok",
or "partial" only where a value honestly cannot be computed on a one-epoch
digits model (a verification scenario or ASR-C over no correctly classified
image), with the metrics its launcher promises. The launchers of one config
file share a workdir, so later variants reuse the models of earlier ones,
and every model is a small MLP registered here (the CNN compiles several
times slower; the models' own tests cover it).
"""

from __future__ import annotations

import json
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from configs import craft_poison as craft_configs
from configs import dataset_watermark as dataset_configs
from configs import model_watermark as model_configs
from configs import train as train_configs
from experiments import ablate_ubw_p
from experiments import alignment_transfer
from jaxwm import launch
from jaxwm.models import common
from jaxwm.models import registry
from jaxwm.poison import craft_experiment
from jaxwm.poison import experiment as dataset_experiment
from jaxwm.train import recipe
from jaxwm.watermark import experiment as model_experiment
from jaxwm.watermark import false_acceptance

DATASET_METRICS = {"benign_accuracy", "asr_a", "asr_c", "d_p", "d_s", "d_c",
                   "top_class_share", "benign_accuracy_no_watermark",
                   "verification", "p_value", "delta_p", "poison_rate",
                   "watermark_key_digest"}
POISON_METRICS = {"poison_key_digest", "poisoned_samples", "test_accuracy",
                  "clean_test_accuracy"}
CRAFTED_WATERMARK_METRICS = {
    "poison_key_digest", "poisoned_samples", "crafting_objective",
    "benign_accuracy", "asr_a", "asr_c", "d_p", "d_s", "d_c",
    "benign_accuracy_clean_model", "asr_a_clean_model", "d_p_clean_model",
    "verification", "p_value", "delta_p"}
MODEL_METRICS = {"benign_accuracy", "benign_accuracy_unmarked",
                 "accuracy_drop", "watermark_accuracy", "p_value",
                 "log10_p_value", "verified", "unmarked", "removal",
                 "verification_key_digest"}
# What a one-epoch digits model may honestly leave uncomputed.
UNDEFINED_ON_DIGITS = ("metrics.verification.", "metrics.asr_c")
MODEL = "runlocal_tests_mlp"


class _Mlp(nn.Module):
  """One hidden layer of ``width`` units and the jaxwm ``head``."""

  num_classes: int
  width: int = 16
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    x = common.normalize(x, self.dtype).reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(self.width, dtype=self.dtype)(x))
    return common.classifier_head(x, self.num_classes, self.dtype, self)


def _case(experiment: str, run_fn: Callable[..., Any], get_config,
          variant: str, workdir: str, promised: set[str],
          may_be_undefined: tuple[str, ...] = ()):
  return pytest.param(experiment, run_fn, get_config, variant, workdir,
                      promised, may_be_undefined,
                      id=f"{experiment}:{variant}")


CASES = [
    _case("train", recipe.train_and_evaluate, train_configs.get_config,
          "digits,runlocal", "train",
          {"benign_accuracy", "test_loss", "train_examples"}),
    *(_case("dataset_watermark", dataset_experiment.run_experiment,
            dataset_configs.get_config, f"{method},digits,runlocal",
            "dataset_watermark", DATASET_METRICS, UNDEFINED_ON_DIGITS)
      for method in dataset_configs.METHODS),
    _case("ablate_ubw_p", ablate_ubw_p.run_ablation,
          dataset_configs.get_config, "ubw_p,digits,runlocal",
          "dataset_watermark", {"curves"}),
    *(_case("craft_poison", craft_experiment.run_experiment,
            craft_configs.get_config, f"{method},digits,runlocal",
            "craft_poison", POISON_METRICS)
      for method in craft_configs.AVAILABILITY),
    *(_case("craft_poison", craft_experiment.run_experiment,
            craft_configs.get_config, f"{method},digits,runlocal",
            "craft_poison", CRAFTED_WATERMARK_METRICS, UNDEFINED_ON_DIGITS)
      for method in craft_configs.WATERMARKS),
    _case("alignment_transfer", alignment_transfer.run_transfer,
          craft_configs.get_config, "availability,digits,runlocal",
          "craft_poison", {"surrogate", "curve"}),
    _case("model_watermark", model_experiment.run_experiment,
          model_configs.get_config, "adi_fromscratch,digits,runlocal",
          "model_watermark", MODEL_METRICS | {"piracy", "transfer"}),
    _case("model_watermark", model_experiment.run_experiment,
          model_configs.get_config, "adi_pretrained,digits,runlocal",
          "model_watermark", MODEL_METRICS),
    _case("false_acceptance", false_acceptance.run_experiment,
          model_configs.get_config, "false_acceptance,digits,runlocal",
          "model_watermark",
          {"false_acceptance_rate", "accepted", "models", "alpha",
           "exact_size", "rate_upper_95", "mean_agreement",
           "benign_accuracy"}),
]


@pytest.fixture(scope="module", autouse=True)
def _mlp_registered():
  registry.register(MODEL, _Mlp)


@pytest.fixture(scope="module")
def shared_workdirs(tmp_path_factory):
  """One workdir per config file, created on first use."""
  root = tmp_path_factory.mktemp("runlocal")
  return lambda name: str(root / name)


@pytest.mark.parametrize(
    "experiment, run_fn, get_config, variant, workdir, promised, "
    "may_be_undefined", CASES)
def test_runlocal_variant_writes_its_results(
    experiment, run_fn, get_config, variant, workdir, promised,
    may_be_undefined, shared_workdirs, tmp_path):
  config = get_config(variant)
  config.model = MODEL
  output = tmp_path / "results.json"
  written = launch.run_job(experiment, run_fn, config,
                           workdir=shared_workdirs(workdir),
                           output_json=str(output),
                           command=f"{experiment} {variant}")
  assert json.loads(output.read_text()) == written
  assert written["error"] is None, written["error"]
  assert written["status"] in ("ok", "partial")
  assert (written["status"] == "partial") == bool(written["incomplete"])
  for path, reason in written["incomplete"].items():
    assert path.startswith(may_be_undefined), (path, reason)
    assert reason
  metrics = written["metrics"]
  assert promised <= set(metrics), promised - set(metrics)
  assert (written["experiment"], written["dataset"], written["seed"]) == (
      experiment, "digits", config.seed)
  assert written["command"] == f"{experiment} {variant}"
  if "verification" in promised:
    _check_verification(metrics, written["incomplete"], config.verify.alpha)
  if experiment == "ablate_ubw_p":
    assert set(metrics["curves"]) == set(config.ablation.arms)
    for points in metrics["curves"].values():
      assert [p["epochs"] for p in points] == list(config.ablation.epochs)


def _check_verification(metrics: dict[str, Any], incomplete: dict[str, str],
                        alpha: float) -> None:
  """Each scenario has a decided test result or a stated reason."""
  for name, entry in metrics["verification"].items():
    path = f"metrics.verification.{name}"
    if "error" in entry:
      assert incomplete[path] == entry["error"]
      assert name not in metrics["p_value"]
      continue
    assert entry["alpha"] == alpha and entry["m"] >= 2
    assert 0.0 < entry["p_value"] <= 1.0
    assert entry["decision"] == ("reject_h0" if entry["p_value"] < alpha
                                 else "fail_to_reject_h0")
    assert metrics["p_value"][name] == entry["p_value"]
