"""End to end: the dataset watermark experiment on digits, as an importable
function and through the launcher's flags, and its config.

The models are a linear classifier registered here: it learns digits and a
3x3 BadNets patch in a few epochs and compiles far faster than the CNN.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from absl import flags

from configs import dataset_watermark as dw_config
from experiments import dataset_watermark as launcher
from jaxwm import launch
from jaxwm.models import common
from jaxwm.models import registry
from jaxwm.recipes import dataset_watermark
from jaxwm.poison.watermark_key import WatermarkKey

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINEAR = "dataset_watermark_tests_linear"
VARIANT = "badnets,digits,runlocal"
# A runlocal digits run made long enough for a 3x3 patch to be learned.
OVERRIDES = {"model": LINEAR, "train_fraction": 1.0, "train.num_epochs": 4,
             "watermark.patch_size": 3}


class _Linear(nn.Module):
  """Logits = head(flattened image)."""

  num_classes: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    return common.classifier_head(x.reshape(x.shape[0], -1),
                                  self.num_classes, jnp.float32, self)


def _linear(num_classes: int, dtype: Any = jnp.float32) -> _Linear:
  del dtype  # float32 only
  return _Linear(num_classes)


def _config():
  config = dw_config.get_config(VARIANT)
  for name, value in OVERRIDES.items():
    *path, field = name.split(".")
    block = config
    for part in path:
      block = block[part]
    block[field] = value
  return config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  registry.register(LINEAR, _linear)
  workdir = str(tmp_path_factory.mktemp("dataset_watermark"))
  return workdir, dataset_watermark.run_experiment(_config(), workdir)


def test_badnets_on_digits_is_learned_and_verified(finished_run):
  workdir, outcome = finished_run
  values = outcome["metrics"]
  assert (outcome["dataset"], outcome["model"]) == ("digits", LINEAR)
  assert values["benign_accuracy_no_watermark"] > 0.85
  assert (values["benign_accuracy"] >
          values["benign_accuracy_no_watermark"] - 0.1)
  assert values["asr_a"] > 0.9 and values["asr_c"] > 0.9
  assert values["d_p"] < 0.3 and values["top_class_share"] > 0.9
  # The paper's evaluation: source class 0 (target 1); beside it, every
  # class but the target.
  assert values["source_classes"] == [0]
  assert values["all_classes"]["source_classes"] == [0, *range(2, 10)]
  assert values["all_classes"]["asr_a"] > 0.9
  for block in (values, values["all_classes"]):
    assert block["p_value"]["malicious"] < 1e-3
    assert block["delta_p"]["malicious"] > 0.5
    assert block["verification"]["malicious"]["decision"] == "reject_h0"
    for scenario in ("independent_t", "independent_m",
                     "independent_trigger_model"):
      assert block["p_value"][scenario] > 0.05
      assert block["verification"][scenario]["m"] == 20
      assert block["verification"][scenario]["decision"] == (
          "fail_to_reject_h0")
  folders = sorted(os.listdir(workdir))
  assert [f.split("-")[0] for f in folders] == [
      f"badnets_independent_digits_{LINEAR}_seed0",
      f"badnets_watermarked_digits_{LINEAR}_seed0",
      f"benign_digits_{LINEAR}_seed0"]
  key = WatermarkKey.load(
      os.path.join(workdir, folders[1], dataset_watermark.KEY_FILE),
      values["watermark_key_digest"])
  assert key.method == "badnets" and key.target_label == 1
  assert values["poison_rate"] == pytest.approx(key.poison_rate)


def test_launcher_reuses_the_models_and_writes_the_results(
    finished_run, tmp_path, monkeypatch, capsys):
  workdir, outcome = finished_run
  output = tmp_path / "result.json"
  if "output_json" not in flags.FLAGS:
    launch.define_flags(os.path.join(REPO, "configs/dataset_watermark.py"))
  argv = ["dataset_watermark",
          f"--config={REPO}/configs/dataset_watermark.py:{VARIANT}",
          *(f"--config.{name}={value}" for name, value in OVERRIDES.items()),
          f"--workdir={workdir}", f"--output_json={output}"]
  monkeypatch.setattr(sys, "argv", argv)  # config overrides read sys.argv
  flags.FLAGS(argv)
  try:
    launcher.main(["dataset_watermark"])
  finally:
    flags.FLAGS.unparse_flags()
  result = json.loads(output.read_text())
  assert result["experiment"] == "dataset_watermark"
  assert (result["dataset"], result["model"], result["seed"]) == (
      "digits", LINEAR, 0)
  assert result["config"]["watermark"]["patch_size"] == 3
  # Every model was restored from its checkpoint: the same numbers.
  for name in ("benign_accuracy", "asr_a", "d_p"):
    assert result["metrics"][name] == pytest.approx(
        outcome["metrics"][name], abs=1e-6)
  assert result["metrics"]["p_value"] == pytest.approx(
      outcome["metrics"]["p_value"], rel=1e-6)
  assert len(os.listdir(workdir)) == 3
  assert (result["status"], result["error"], result["incomplete"]) == (
      "ok", None, {})
  # The summary, then the tables: Table 1's row and Table 3's block, for
  # the paper's source class, then for every class.
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].startswith("dataset_watermark: ok")
  assert f"results: {output}" in lines
  lines = lines[lines.index(f"results: {output}") + 1:]
  assert lines[0].startswith("BA ")
  paper, every = lines[2:8], lines[9:15]
  for block, values in ((paper, result["metrics"]),
                        (every, result["metrics"]["all_classes"])):
    assert block[1].split()[-1] == "D_p"
    assert float(block[2].split()[0]) == pytest.approx(values["asr_a"],
                                                       abs=1e-4)
    assert block[3].split() == ["independent_t", "independent_m",
                                "malicious", "independent_trigger_model"]
    assert float(block[5].split()[3]) == pytest.approx(
        values["p_value"]["malicious"], rel=1e-2)
  assert paper[0].endswith("classes [0]")


@pytest.mark.parametrize("variant, method, dataset, model", [
    ("ubw_p,fashion_mnist", "ubw_p", "fashion_mnist", "cnn"),
    ("label_consistent,tfds:cifar10,resnet18", "label_consistent",
     "tfds:cifar10", "resnet18"),
])
def test_config_variants(variant, method, dataset, model):
  config = dw_config.get_config(variant)
  assert config.watermark.method == method
  assert (config.dataset, config.model) == (dataset, model)
  assert (config.verify.m, config.verify.tau) == (100, 0.25)
  assert config.train.augment.shift == 0 and config.train.augment.flip


def test_config_rejects_an_unknown_method():
  with pytest.raises(ValueError, match="must start with one of"):
    dw_config.get_config("sleeper,fashion_mnist")
