"""How often each verifier accuses a model that was never marked:
``--config=configs/false_acceptance.py:VARIANT`` for
``experiments/false_acceptance.py``.

VARIANT is a verifier followed by the variant of the config file that owns
its watermark, and ``false_acceptance.verifier`` says which:

* ``adi,REST``: ``false_acceptance,REST`` of ``configs/model_watermark.py``
  (Adi et al.'s binomial test and the paper's threshold rule, a fresh
  secret key per model), e.g. ``adi,fashion_mnist``.
* ``dataset,REST``: ``REST`` of ``configs/dataset_watermark.py``, a
  poisoned-label watermark (``badnets``, ``blended``, ``wanet``,
  ``ubw_p``), e.g. ``dataset,ubw_p,fashion_mnist`` or
  ``dataset,badnets,digits,runlocal``. The owner's key is the one
  ``experiments/dataset_watermark.py`` draws; each model is trained with
  the watermark experiment's recipe on its own stratified 80% of the clean
  training images that recipe uses (``train_fraction``; never the marked
  set), and verified by the dataset watermark's paired t-test (block
  ``verify``).
* ``move_whitebox,REST`` and ``move_blackbox,REST``: the same variants of
  ``configs/model_stealing.py``: the MOVE owner of the model-stealing
  experiment (victim, reference models and meta-classifier, on the owner's
  half) and its verdict on models trained on the whole attacker half,
  alternately of the victim's architecture and of the ``independent``
  block's, model i with seed ``seed + independent.seed_offset + i``.

Every verifier trains ``false_acceptance.num_models`` models (100 for the
t-tests; 4 with ``runlocal``), E at a time in one program with
``false_acceptance.ensemble_size`` E > 0 (E per architecture for MOVE).
"""

from __future__ import annotations

import ml_collections

from configs import dataset_watermark as dataset_configs
from configs import model_stealing as stealing_configs
from configs import model_watermark as model_configs
from configs import train as train_configs

VARIANTS = ("adi", "dataset", "move_whitebox", "move_blackbox")
# Each variant's ``false_acceptance.verifier``.
VERIFIERS = {"adi": "adi", "dataset": "dataset", "move_whitebox": "move",
             "move_blackbox": "move"}
# The dataset verifier's watermarks: their key needs no model.
DATASET_METHODS = dataset_configs.POISONED_LABEL
NUM_MODELS = 100
RUNLOCAL_MODELS = 4


def _owner_config(variant: str, rest: str) -> ml_collections.ConfigDict:
  """The config of the experiment that owns ``variant``'s watermark."""
  if variant == "dataset":
    method = rest.partition(",")[0]
    if method not in DATASET_METHODS:
      raise ValueError(
          f"config variant dataset,{rest} must name a poisoned-label "
          f"watermark ({', '.join(DATASET_METHODS)}), e.g. "
          "dataset,ubw_p,fashion_mnist; label_consistent's key needs a "
          "surrogate model.")
    return dataset_configs.get_config(rest)
  return stealing_configs.get_config(f"{variant},{rest}")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant, rest = train_configs.split_variant(
      arg, VARIANTS,
      "dataset,ubw_p,fashion_mnist or move_whitebox,digits,runlocal")
  if variant == "adi":
    return model_configs.get_config(f"false_acceptance,{rest}")
  config = _owner_config(variant, rest)
  block = model_configs.false_acceptance_config(VERIFIERS[variant])
  block.num_models = NUM_MODELS
  if block.verifier == "move":
    block.subset_fraction = 1.0  # the whole attacker half.
  if "runlocal" in rest.split(","):
    block.num_models = RUNLOCAL_MODELS
  config.false_acceptance = block
  return config
