"""The Adi et al. model watermark experiment: Mark, Verify, removal attacks,
piracy and transfer (Sections 4.2-4.4 of the paper).

:func:`run_experiment` is the whole ``experiments/model_watermark.py`` job,
importable from a notebook.

The training set is split (stratified, seeded) into the owner's part and
the attacker's held-out part (``attack.held_out_fraction``). The owner
trains a non-marked model and a marked one (FROMSCRATCH or PRETRAINED) on
its part; the attacker fine-tunes the marked model on the held-out part
(FTLL, FTAL, RTLL, RTAL) for ``attack.num_epochs`` (None: as many as
training), embeds its own trigger set into it (ownership piracy) and
transfers it to another dataset. The paper's attacker (Section 4.4) has
"the same amount of training instances and epochs as in training the
model": halves of the training set (``held_out_fraction=0.5``) and as
many epochs; ``attack_budget`` records the images, epochs and optimizer
steps of both sides.

Every model is checkpointed under ``--workdir`` in a folder named after its
role and a SHA-256 fingerprint of everything it depends on, and the keys
are saved there once, so a second run with the same workdir (for instance
the other mode) reuses the non-marked model and whatever else it shares;
the engine checks each checkpoint's identity record before restoring it
(:mod:`jaxwm.identity`).

Metrics: ``attack_budget``, ``benign_accuracy`` (marked) and
``benign_accuracy_unmarked``,
the verdict of the marked model and ``unmarked`` (the non-marked model under
the owner's key), ``removal`` (per attack: ``test_accuracy`` and its
verdict), ``piracy`` and ``transfer``, with ``alpha`` and ``eps``. A verdict
is ``watermark_accuracy``, ``p_value``, ``log10_p_value`` and both
decisions of :func:`jaxwm.watermark.adi.verify`: ``accepted_binomial`` (the
binomial test at ``alpha``) and ``accepted_threshold`` (the paper's rule,
at most ``eps`` |T| disagreements).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from absl import logging

from jaxwm import data as jaxwm_data
from jaxwm import identity, monitor
from jaxwm.fingerprint import fingerprint
from jaxwm.recipes.common import picture_samples
from jaxwm.steal import finetune
from jaxwm.train import recipe
from jaxwm.verify.levels import decision
from jaxwm.watermark import adi
from jaxwm.watermark import embedding

# Key streams of the models of one run (the engine's ``stream`` argument).
STREAMS = {"unmarked": 0, "marked": 1, "pirated": 2, "transfer": 3,
           **{f"removal_{name}": 10 + i
              for i, name in enumerate(finetune.ATTACKS)},
           **{f"piracy_{name}": 20 + i
              for i, name in enumerate(finetune.ATTACKS)}}


def saved_keys(config, workdir: str, owner: str, n: int, num_classes: int,
               image_shape: tuple[int, ...]
               ) -> tuple[adi.MarkingKey, adi.VerificationKey]:
  """``owner``'s keys, generated and saved in ``workdir`` on the first run.

  Their folder is named by everything :func:`adi.keygen` uses (the owner,
  n, the classes, the image shape and ``watermark.trigger_seed``), so a
  run with other values gets other keys; with no trigger seed the secret
  keys drawn by the first run are the owner's keys of every later run in
  the same workdir.
  """
  seed = config.watermark.trigger_seed
  folder = os.path.join(workdir, "keys-" + fingerprint(
      owner, n, num_classes, image_shape, seed))
  mk_path = os.path.join(folder, "marking_key")
  vk_path = os.path.join(folder, "verification_key")
  if os.path.exists(mk_path + ".json"):
    return adi.MarkingKey.load(mk_path), adi.VerificationKey.load(vk_path)
  # The pirate's trigger set must differ from the owner's, also when the
  # owner's is seeded for reproducibility.
  mk, vk = adi.keygen(n, num_classes, image_shape,
                      None if seed is None else f"{owner}:{seed}".encode())
  os.makedirs(folder, exist_ok=True)
  mk.save(mk_path)
  vk.save(vk_path)
  logging.info("%s keys saved in %s; publish vk digest %s", owner, folder,
               vk.digest())
  return mk, vk


class _Run:
  """The folders, keys and verifications of one experiment run."""

  def __init__(self, config, workdir: str, train: jaxwm_data.Dataset):
    self.config = config
    self.workdir = workdir
    self.num_classes = train.num_classes
    self.image_shape = train.image_shape

  def model_dir(self, role: str, *parts: Any) -> str:
    """``workdir/<role>-<fingerprint>``: the fingerprint covers everything
    the non-marked model depends on (its recipe, the owner's share of the
    data, the jaxwm version) and ``parts``, what the ``role`` adds."""
    return os.path.join(self.workdir, f"{role}-" + identity.folder_fingerprint(
        self.config, self.config.attack.held_out_fraction, *parts))

  def keys(self, owner: str, n: int) -> tuple[adi.MarkingKey,
                                              adi.VerificationKey]:
    """``owner``'s keys (:func:`saved_keys`)."""
    return saved_keys(self.config, self.workdir, owner, n, self.num_classes,
                      self.image_shape)

  def verdict(self, keys, model: recipe.TrainedModel) -> dict[str, Any]:
    wm = self.config.watermark
    result = adi.verify(*keys, model.predict_proba, alpha=wm.alpha,
                        eps=wm.eps)
    return {"watermark_accuracy": result.agreement,
            "p_value": result.p_value,
            "log10_p_value": result.log10_p_value,
            "accepted_binomial": bool(result.accepted_binomial),
            "accepted_threshold": bool(result.accepted_threshold),
            "alpha": result.alpha, "eps": result.eps,
            "decision": decision(result.accepted_binomial)}


def attack_epochs(config) -> int:
  """The removal attacks' epochs: ``attack.num_epochs``, or as many as
  training when it is None (Section 4.4)."""
  epochs = config.attack.num_epochs
  return config.train.num_epochs if epochs is None else epochs


def attack_budget(config, owner_images: int,
                  attacker_images: int) -> dict[str, int]:
  """What training and each removal attack spend: images, epochs and
  optimizer steps (``images // batch_size`` per epoch) of each side."""
  batch, epochs = config.train.batch_size, attack_epochs(config)
  return {"owner_images": owner_images,
          "owner_epochs": config.train.num_epochs,
          "owner_steps": owner_images // batch * config.train.num_epochs,
          "attacker_images": attacker_images,
          "attacker_epochs": epochs,
          "attacker_steps": attacker_images // batch * epochs}


def _attack_config(config, epochs: int, learning_rate: float | None):
  if learning_rate is None:
    learning_rate = finetune.final_learning_rate(config.train)
  return finetune.finetune_config(config, learning_rate=learning_rate,
                                  num_epochs=epochs)


def _mark(run: _Run, owner_data, owner_keys, unmarked
          ) -> tuple[recipe.TrainedModel, tuple[Any, ...]]:
  """The owner's marked model and the fingerprint parts it depends on.

  PRETRAINED continues training the non-marked model with the triggers for
  a second run of the training recipe, so that both modes see the triggers
  equally often.
  """
  wm = run.config.watermark
  pretrained = wm.mode == embedding.PRETRAINED
  parts = (wm.mode, wm.triggers_per_batch, owner_keys[1].digest())
  marked = embedding.mark(
      run.config, owner_data, owner_keys[0], wm.mode,
      workdir=run.model_dir("marked", *parts),
      base_variables=unmarked.variables if pretrained else None,
      stream=STREAMS["marked"], k=wm.triggers_per_batch)
  return marked, parts


def _removal(run: _Run, marked, marked_parts, attacker_data, test,
             keys_by_party: dict[str, tuple], names, prefix: str,
             outcome: dict[str, Any]) -> None:
  """Each attack in ``names`` on ``marked``, verified with every party's
  keys; each attack's entry goes into ``outcome`` as it is measured."""
  attack = run.config.attack
  config = _attack_config(run.config, attack_epochs(run.config),
                          attack.learning_rate)
  for name in names:
    logging.info("%s: %s", prefix, name)
    attacked = finetune.fine_tune(
        config, marked, attacker_data, name,
        workdir=run.model_dir(f"{prefix}_{name}", *marked_parts,
                              config.train.to_dict()),
        stream=STREAMS[f"{prefix}_{name}"])
    entry = {"test_accuracy": attacked.evaluate(test)["accuracy"]}
    for party, keys in keys_by_party.items():
      verdict = run.verdict(keys, attacked)
      entry.update(verdict if len(keys_by_party) == 1 else {party: verdict})
    outcome[name] = entry


def _piracy(run: _Run, marked, marked_parts, attacker_data, test,
            owner_keys, outcome: dict[str, Any]) -> None:
  """The attacker embeds TS-NEW into the marked model (PRETRAINED, with as
  many epochs as the owner's embedding, Section 4.4); the entries go into
  ``outcome`` as they are measured."""
  wm = run.config.watermark
  pirate_keys = run.keys("pirate", run.config.piracy.num_triggers)
  parts = (*marked_parts, pirate_keys[1].digest())
  pirated = embedding.mark(run.config, attacker_data, pirate_keys[0],
                           embedding.PRETRAINED,
                           workdir=run.model_dir("pirated", *parts),
                           base_variables=marked.variables,
                           stream=STREAMS["pirated"],
                           k=wm.triggers_per_batch)
  parties = {"owner": owner_keys, "pirate": pirate_keys}
  outcome.update(
      test_accuracy=pirated.evaluate(test)["accuracy"],
      **{party: run.verdict(keys, pirated) for party, keys in parties.items()},
      # The model the owner released, and time-stamped vk for, before the
      # pirate ever saw it: only the owner's watermark is in it.
      pirate_on_released_model=run.verdict(pirate_keys, marked),
      after={})
  _removal(run, pirated, parts, attacker_data, test, parties,
           run.config.piracy.attacks, "piracy", outcome["after"])


def _transfer(run: _Run, marked, marked_parts, owner_keys) -> dict[str, Any]:
  """RTAL on another dataset; verified with the original head (Sec. 4.4)."""
  spec = run.config.transfer
  train, test = (finetune.to_image_shape(
      jaxwm_data.load(spec.dataset, split), run.image_shape)
                 for split in ("train", "test"))
  config = _attack_config(run.config, spec.num_epochs, spec.learning_rate)
  transferred = finetune.fine_tune(
      config, marked, train, "rtal",
      workdir=run.model_dir("transfer", *marked_parts, spec.to_dict(),
                            config.train.to_dict()),
      stream=STREAMS["transfer"])
  return {"dataset": spec.dataset,
          "test_accuracy": transferred.evaluate(test)["accuracy"],
          **run.verdict(owner_keys,
                        finetune.with_head(transferred, marked))}


def count_models(config) -> int:
  """The models the experiment trains: the non-marked and marked models,
  one per removal attack, and with piracy the pirated model and one per
  attack on it, and with transfer learning the transferred model."""
  count = 2 + len(config.attack.names)
  if config.piracy.enabled:
    count += 1 + len(config.piracy.attacks)
  return count + int(config.transfer.enabled)


def run_experiment(config, workdir: str,
                   metrics: dict[str, Any] | None = None) -> dict[str, Any]:
  """The whole experiment; returns the launcher's ``outcome`` mapping.

  Args:
    config: a config from ``configs/model_watermark.py``.
    workdir: where models and keys go (reused across runs and modes).
    metrics: the dict to fill, stage by stage, as values are measured (the
      launcher's, so that a failure still reports them); default a new one.
      The metrics are those of the module docstring.
  """
  metrics = {} if metrics is None else metrics
  owner_data, attacker_data, test = recipe.load_owner_and_attacker(
      config, config.attack.held_out_fraction)
  metrics["attack_budget"] = attack_budget(config, len(owner_data),
                                           len(attacker_data))
  run = _Run(config, workdir, owner_data)
  owner_keys = run.keys("owner", config.watermark.num_triggers)
  metrics["verification_key_digest"] = owner_keys[1].digest()
  monitor.expect_models(count_models(config))
  picture_samples("trigger_set", owner_keys[0].triggers,
                  np.arange(len(owner_keys[0].triggers)),
                  "the owner's trigger set and its labels")
  unmarked = recipe.train_model(config, owner_data,
                                workdir=run.model_dir("unmarked"),
                                stream=STREAMS["unmarked"])
  unmarked_accuracy = unmarked.evaluate(test)["accuracy"]
  metrics.update(benign_accuracy_unmarked=unmarked_accuracy,
                 unmarked=run.verdict(owner_keys, unmarked))
  marked, marked_parts = _mark(run, owner_data, owner_keys, unmarked)
  marked_accuracy = marked.evaluate(test)["accuracy"]
  metrics.update(benign_accuracy=marked_accuracy,
                 accuracy_drop=unmarked_accuracy - marked_accuracy,
                 **run.verdict(owner_keys, marked), removal={})
  _removal(run, marked, marked_parts, attacker_data, test,
           {"owner": owner_keys}, config.attack.names, "removal",
           metrics["removal"])
  if config.piracy.enabled:
    metrics["piracy"] = {}
    _piracy(run, marked, marked_parts, attacker_data, test, owner_keys,
            metrics["piracy"])
  if config.transfer.enabled:
    metrics["transfer"] = _transfer(run, marked, marked_parts, owner_keys)
  return {"dataset": config.dataset, "model": config.model,
          "metrics": metrics}
