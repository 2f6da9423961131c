"""The configs' variants and the launchers' flags.

A variant must name its dataset (none falls back to the 100-epoch
Fashion-MNIST job), every command in the docs names one, and each
launcher's ``--help`` lists its flags.
"""

from __future__ import annotations

import glob
import importlib
import os
import re
import subprocess
import sys

import pytest

from configs import train as train_configs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Placeholders the docs write in variants, and what stands in for them.
PLACEHOLDERS = {"METHOD": None, "DATASET": "digits"}


@pytest.mark.parametrize("config_file, variant, example", [
    ("dataset_watermark", "ubw_p", "ubw_p,digits,runlocal"),
    ("craft_poison", "ubw_c", "ubw_c,digits,runlocal"),
    ("model_watermark", "adi_fromscratch", "adi_fromscratch,digits,runlocal"),
    ("model_watermark", "adi_pretrained,runlocal",
     "adi_pretrained,digits,runlocal"),
    ("train", None, "digits,runlocal"),
    ("train", "cnn,runlocal", "digits,runlocal"),
    ("dataset_watermark", None, "ubw_p,digits,runlocal"),
    ("craft_poison", "", "availability,digits,runlocal"),
])
def test_a_variant_without_a_dataset_is_refused(config_file, variant,
                                                example):
  module = importlib.import_module(f"configs.{config_file}")
  with pytest.raises(ValueError) as caught:
    module.get_config(variant)
  message = str(caught.value)
  assert f"config variant {variant or ''!r}" in message
  assert example in message


def test_a_variant_names_one_dataset_and_at_most_one_model():
  assert train_configs.parse_variant("tfds:cifar10,resnet18,runlocal") == (
      "tfds:cifar10", "resnet18", True)
  for variant in ("digits,fashion_mnist", "digits,cnn,resnet18"):
    with pytest.raises(ValueError, match="must name one dataset"):
      train_configs.parse_variant(variant)


@pytest.mark.parametrize("config_file, choices", [
    ("dataset_watermark", "METHODS"), ("craft_poison", "METHODS"),
    ("model_stealing", "METHODS"), ("model_watermark", "MODES"),
    ("removal", "ROWS"), ("false_acceptance", "VARIANTS")])
def test_an_unknown_first_part_is_refused_with_the_choices(config_file,
                                                           choices):
  module = importlib.import_module(f"configs.{config_file}")
  choices = list(getattr(module, choices))
  with pytest.raises(ValueError) as caught:
    module.get_config("nonesuch,digits")
  assert (f"config variant 'nonesuch,digits' must start with one of "
          f"{', '.join(choices)}, e.g. ") in str(caught.value)
  assert train_configs.split_variant(f"{choices[0]},digits,runlocal",
                                     choices, "") == (choices[0],
                                                      "digits,runlocal")


def _documented_variants():
  """(config file, variant) of every ``configs/NAME.py:VARIANT`` in the
  README, the docs and the code, placeholders filled in."""
  paths = [os.path.join(REPO, "README.md"),
           *glob.glob(os.path.join(REPO, "docs", "*.md")),
           *glob.glob(os.path.join(REPO, "experiments", "*.py")),
           *glob.glob(os.path.join(REPO, "configs", "*.py")),
           *glob.glob(os.path.join(REPO, "jaxwm", "**", "*.py"),
                      recursive=True)]
  found = set()
  for path in paths:
    with open(path) as f:
      text = f.read()
    for name, variant in re.findall(r"configs/(\w+)\.py:([\w,:./-]+)", text):
      variant = variant.rstrip(".,")
      if name == "NAME" or variant == "VARIANT":
        continue
      found.add((name, variant))
  return sorted(found)


@pytest.mark.parametrize("config_file, variant", _documented_variants())
def test_every_documented_variant_names_its_dataset(config_file, variant):
  module = importlib.import_module(f"configs.{config_file}")
  parts = variant.split(",")
  method = getattr(module, "METHODS", getattr(module, "MODES", None))
  fill = {**PLACEHOLDERS, "METHOD": next(iter(method or ()), None)}
  parts = [fill.get(part, part) for part in parts]
  config = module.get_config(",".join(parts))
  assert config.dataset in parts


# Every launcher declares its flags with launch.define_flags; these two (one
# with a flag of its own) stand for all, each --help costing a Python start.
@pytest.mark.parametrize("launcher", ["train", "ablate_ubw_p"])
def test_help_lists_the_launcher_flags(launcher):
  shown = subprocess.run(
      [sys.executable, "-m", f"experiments.{launcher}", "--help"], cwd=REPO,
      capture_output=True, text=True, timeout=120, check=False).stdout
  for flag in ("--config", "--workdir", "--output_json", "--[no]distributed"):
    assert f"  {flag}:" in shown
  assert "configs/" in shown.split("--config:")[1].split("--")[0]
  if launcher == "ablate_ubw_p":
    assert "  --plot:" in shown
