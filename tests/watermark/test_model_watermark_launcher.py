"""The model-watermark experiment end to end on digits (runlocal)."""

import json
import os

import pytest

from configs import model_watermark as model_watermark_configs
from jaxwm import results
from jaxwm.watermark import experiment as model_watermark

VERDICT = {"watermark_accuracy", "p_value", "log10_p_value",
           "accepted_binomial", "accepted_threshold"}


def test_config_variants():
  config = model_watermark_configs.get_config("adi_pretrained,fashion_mnist")
  assert config.watermark.mode == "pretrained"
  # Piracy and transfer learning are run on FROMSCRATCH models (Sec. 4.4).
  assert not config.piracy.enabled and not config.transfer.enabled
  assert model_watermark_configs.get_config(
      "adi_fromscratch,digits").piracy.enabled
  assert (config.dataset, config.model) == ("fashion_mnist", "cnn")
  # The paper's schedule: / 10 after each third; fine-tuning at the last rate.
  assert config.train.schedule == "step"
  epochs = config.train.num_epochs
  assert tuple(config.train.milestones) == (epochs // 3, 2 * epochs // 3)
  assert config.attack.num_epochs == epochs
  with pytest.raises(ValueError, match="adi_fromscratch, adi_pretrained"):
    model_watermark_configs.get_config("fashion_mnist")


def test_runs_end_to_end_and_writes_the_contract(tmp_path, tiny_model_name):
  config = model_watermark_configs.get_config(
      "adi_fromscratch,digits,runlocal")
  config.model = tiny_model_name
  config.attack.names = ("rtal",)
  config.piracy.attacks = ("ftal",)
  workdir = str(tmp_path / "work")
  outcome = model_watermark.run_experiment(config, workdir)
  written = results.write_results(
      str(tmp_path / "out.json"), experiment="model_watermark", config=config,
      dataset=outcome["dataset"], model=outcome["model"], seed=config.seed,
      metrics=outcome["metrics"], wall_s=1.0)
  with open(tmp_path / "out.json") as f:
    assert json.load(f) == written
  metrics = written["metrics"]
  assert written["dataset"] == "digits"
  assert {"benign_accuracy", "benign_accuracy_unmarked", "accuracy_drop",
          "unmarked", "removal", "piracy", "transfer"} <= set(metrics)
  assert VERDICT <= set(metrics) and VERDICT <= set(metrics["unmarked"])
  for value in (metrics["benign_accuracy"], metrics["watermark_accuracy"],
                metrics["benign_accuracy_unmarked"]):
    assert 0.0 <= value <= 1.0
  assert 0.0 < metrics["p_value"] <= 1.0
  assert (metrics["alpha"], metrics["eps"]) == (0.01, 0.1)
  # The paper's rule at eps = 0.1 on 20 triggers: at most 2 disagree.
  assert metrics["accepted_threshold"] == (
      metrics["watermark_accuracy"] >= 0.9)
  assert set(metrics["removal"]) == {"rtal"}
  for attack in metrics["removal"].values():
    assert {"test_accuracy"} | VERDICT == set(attack)
  piracy = metrics["piracy"]
  for party in ("owner", "pirate", "pirate_on_released_model"):
    assert VERDICT == set(piracy[party])
  assert set(piracy["after"]["ftal"]) == {"test_accuracy", "owner", "pirate"}
  assert {"dataset", "test_accuracy"} | VERDICT == set(metrics["transfer"])
  # Keys and models are kept under the workdir, named by their fingerprints.
  roles = {name.split("-")[0] for name in os.listdir(workdir)}
  assert roles == {"keys", "unmarked", "marked",
                   "removal_rtal", "pirated", "piracy_ftal", "transfer"}
