"""Checks of the model watermark blocks of ``configs/model_watermark.py``:
``watermark`` (Adi et al.), ``attack``, ``piracy``, ``transfer`` and
``false_acceptance``.

The config's variant decides the launcher: ``adi_fromscratch`` and
``adi_pretrained`` (``watermark.mode`` ``fromscratch`` and ``pretrained``)
are for ``experiments/model_watermark.py``, ``false_acceptance`` (mode
``unmarked``) for ``experiments/false_acceptance.py``.
"""

from __future__ import annotations

from jaxwm.config_checks.core import Fields, MISSING, Problem, is_integer
from jaxwm.config_checks.training import loadable
from jaxwm.poison import poisoned_label
from jaxwm.steal import finetune
from jaxwm.train import ensemble
from jaxwm.watermark import embedding

UNMARKED = "unmarked"
# ``false_acceptance.verifier``: Adi et al.'s test, the dataset watermark's
# ownership t-test, MOVE's (``configs/false_acceptance.py``).
VERIFIERS = ("adi", "dataset", "move")
# The config variant that sets each mode, and the launcher that runs it.
VARIANTS = {embedding.FROMSCRATCH: ("adi_fromscratch", "model_watermark"),
            embedding.PRETRAINED: ("adi_pretrained", "model_watermark"),
            UNMARKED: ("false_acceptance", "false_acceptance")}


def _mode(fields: Fields, launcher: str) -> None:
  """``watermark.mode`` is one of the variants ``launcher`` runs."""
  mode = fields.get("mode")
  if mode is MISSING:
    return
  variants = [variant for variant, runs in VARIANTS.values()
              if runs == launcher]
  if mode in VARIANTS and VARIANTS[mode][1] == launcher:
    return
  given = (f"the {VARIANTS[mode][0]} variant, for "
           f"experiments.{VARIANTS[mode][1]}" if mode in VARIANTS
           else "not the mode of any variant")
  fields.fail("mode", mode, f"is {given}; experiments.{launcher} takes "
              f"{' or '.join(variants)}, e.g. --config=configs/"
              f"model_watermark.py:{variants[0]},digits,runlocal.")


def _learning_rate(fields: Fields, config) -> None:
  """A fine-tuning learning rate; None needs a schedule with a last rate."""
  if not fields.number("learning_rate", 0, low_open=True, allow_none=True,
                       example=0.001):
    return
  schedule = Fields(config, "", []).block_of("train").get("schedule")
  if fields.block["learning_rate"] is None and schedule == "cosine":
    fields.fail("learning_rate", None, "None takes the last learning rate of "
                "train.schedule, but the cosine schedule ends at 0; set it, "
                f"e.g. --config.{fields.name('learning_rate')}=0.001, or use "
                "--config.train.schedule=step.")


def watermark(config, launcher: str) -> list[Problem]:
  """The ``watermark`` block for ``launcher`` (``"model_watermark"`` or
  ``"false_acceptance"``)."""
  problems: list[Problem] = []
  fields = Fields(config, "", problems).block_of("watermark")
  _mode(fields, launcher)
  fields.integer("num_triggers", 1, example=100)
  fields.integer("trigger_seed", 0, allow_none=True, example=0)
  fields.number("alpha", 0, 1, low_open=True, high_open=True, example=0.01)
  if launcher == "model_watermark":
    _triggers_per_batch(config, fields)
  return problems


def _triggers_per_batch(config, fields: Fields) -> None:
  """1 <= k <= min(n, B - 1) for the owner's and the pirate's trigger sets
  (the triggers replace k rows of each batch of B)."""
  read = Fields(config, "", [])  # the other blocks report their own problems
  batch = read.block_of("train").get("batch_size")
  piracy = read.block_of("piracy")
  limits = [fields.get("num_triggers", optional=True),
            batch - 1 if is_integer(batch) else None,
            piracy.get("num_triggers") if piracy.get("enabled") is True
            else None]
  high = min((limit for limit in limits if is_integer(limit) and limit >= 1),
             default=None)
  fields.integer("triggers_per_batch", 1, high, example=2)


def attacks(config) -> list[Problem]:
  """``attack``, ``piracy`` and ``transfer`` of
  ``experiments/model_watermark.py``."""
  problems: list[Problem] = []
  root = Fields(config, "", problems)
  attack = root.block_of("attack")
  attack.number("held_out_fraction", 0, 1, low_open=True, high_open=True,
                example=0.2)
  attack.names("names", tuple(finetune.ATTACKS), nonempty=False)
  attack.integer("num_epochs", 1, allow_none=True, example=12)
  _learning_rate(attack, config)
  piracy = root.block_of("piracy")
  if piracy.boolean("enabled") and piracy.block["enabled"]:
    piracy.integer("num_triggers", 1, example=100)
    piracy.names("attacks", tuple(finetune.ATTACKS), nonempty=False)
  transfer = root.block_of("transfer")
  if transfer.boolean("enabled") and transfer.block["enabled"]:
    loadable(transfer, "dataset")
    transfer.integer("num_epochs", 1, example=20)
    _learning_rate(transfer, config)
  return problems


def verifier(config) -> str | None:
  """``false_acceptance.verifier`` where it is one of :data:`VERIFIERS`;
  None otherwise (:func:`false_acceptance` reports it)."""
  block = Fields(config, "", []).block_of("false_acceptance")
  name = block.get("verifier", optional=True)
  return name if isinstance(name, str) and name in VERIFIERS else None


def _dataset_method(config, problems: list[Problem]) -> None:
  """The dataset verifier's watermark is a poisoned-label one (a key drawn
  without a surrogate model)."""
  fields = Fields(config, "", problems).block_of("watermark")
  method = fields.get("method")
  if method is not MISSING and method not in poisoned_label.METHODS:
    fields.fail("method", method, "the dataset verifier takes a "
                "poisoned-label watermark (" + ", ".join(
                    poisoned_label.METHODS) + "), whose key needs no "
                "surrogate model, e.g. --config=configs/false_acceptance.py:"
                "dataset,ubw_p,digits,runlocal.")


def false_acceptance(config) -> list[Problem]:
  """The ``false_acceptance`` block: whose verification, how many models,
  on what share, one after another or as ensembles."""
  problems: list[Problem] = []
  fields = Fields(config, "", problems).block_of("false_acceptance")
  fields.choice("verifier", VERIFIERS)
  if verifier(config) == "dataset":
    _dataset_method(config, problems)
  fields.integer("num_models", 1, example=200)
  fields.number("subset_fraction", 0, 1, low_open=True, example=0.1)
  fields.integer("ensemble_size", 0, example=8)
  fields.choice("ensemble_strategy", ensemble.STRATEGIES + (ensemble.AUTO,))
  return problems
