"""The crafted-poison experiment: availability poisons and clean-label
watermarks made by gradient alignment.

:func:`run_experiment` is the whole ``experiments/craft_poison.py`` job,
importable from a notebook:

1. Train the surrogate on the clean training set (not for ``random_noise``),
   keeping its checkpoints after ``config.poison.surrogate_epochs`` when
   the poison aligns against them.
2. Craft the poison with the shared gradient-alignment loop (resumable
   under ``--workdir``) and save the owner's key with its SHA-256
   manifest.
3. Train a fresh victim from scratch on the poisoned set and, with the same
   recipe, key stream and defence, one on the clean set. The victims'
   recipe is the surrogate's unless ``config.victim`` changes it
   (:func:`victim_config`).
4. Evaluate. Availability methods: ``test_accuracy`` (poisoned victim) and
   ``clean_test_accuracy`` (clean victim). ``ubw_c`` and ``sleeper_agent``:
   ``benign_accuracy``, ``asr_a``, ``asr_c``, ``d_p`` (and ``d_s``,
   ``d_c``) of the poisoned victim on triggered source-class test images
   (``*_clean_model``: the same for the clean victim, the trigger's effect
   without the watermark), and the ``verification`` (test result, or the
   reason it could not be run), ``p_value`` and ``delta_p`` of the three
   scenarios: ``malicious`` (the victim, our trigger), ``independent_t``
   (the victim queried with a different trigger, as in the UBW paper,
   Section 5.3) and ``independent_m`` (the clean victim, our trigger).

Every model and the crafting run live in folders named after their role
and a fingerprint of what they depend on, so a rerun resumes or reuses them;
each keeps its identity record (:mod:`jaxwm.identity`), checked before
anything in it is reused.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from typing import Any

import jax
from absl import logging

from jaxwm import alignment
from jaxwm import defenses
from jaxwm import identity
from jaxwm.data.augment import AugmentConfig
from jaxwm.data.dataset import Dataset
from jaxwm.poison import alignment_watermark, availability, triggers
from jaxwm.poison.methods import ALIGNMENT_WATERMARKS
from jaxwm.recipes import scenarios
from jaxwm.recipes.common import model_dir, watermark_metrics
from jaxwm.train import loop, recipe
from jaxwm.train.checkpoint import Checkpointer

# Key streams: the engine's models, and the poison's own key.
STREAMS = {"surrogate": 0, "victim": 1}
POISON_STREAM = 2000


def craft_config(poison) -> alignment.CraftConfig:
  """The crafting loop's settings from the ``poison`` block (eps in 1/255)."""
  return alignment.CraftConfig(
      epsilon=poison.epsilon / 255, steps=poison.steps,
      restarts=poison.restarts, learning_rate=poison.learning_rate,
      milestones=tuple(poison.milestones), gamma=poison.gamma,
      batch_size=poison.batch_size,
      augment=AugmentConfig(**poison.augment.to_dict()),
      independent=poison.independent,
      regularizers=alignment.Regularizers(**poison.regularizers.to_dict()),
      retrain_every=poison.retrain_every,
      checkpoint_every=poison.checkpoint_every, log_every=poison.log_every)


def victim_config(config):
  """``config`` with ``config.train`` replaced by the victims' recipe.

  Every field of ``config.victim`` that is set (not None) replaces the
  field of the same name in ``config.train``; the rest of the recipe is the
  surrogate's.
  """
  result = copy.deepcopy(config)
  overrides = config.victim
  if overrides.num_epochs is not None:
    result.train.num_epochs = overrides.num_epochs
  for name, value in overrides.augment.items():
    if value is not None:
      result.train.augment[name] = value
  return result


def victim_stream(config) -> int:
  """The victims' key stream (initialisation and data order).

  ``config.victim.init``: ``"own"`` (a stream of their own) or
  ``"surrogate"`` (the surrogate's: a victim that starts where the
  surrogate started and sees the data in the same order).
  """
  init = config.victim.init
  if init not in ("own", "surrogate"):
    raise ValueError(f"victim.init={init!r} must be 'own' or 'surrogate'.")
  return STREAMS["surrogate" if init == "surrogate" else "victim"]


def victim_dir(folder: str, role: str, config) -> str:
  """The folder of a ``role`` victim of the victims' ``config``."""
  if config.victim.init != "own":
    role = f"{role}_{config.victim.init}_init"
  return model_dir(folder, role, config, config.defense.to_dict())


def train_victim(config, data: Dataset, workdir: str) -> recipe.TrainedModel:
  """A fresh model on ``data`` with the recipe's augmentation and defence.

  ``config`` is the victims' (:func:`victim_config`).
  """
  stream = victim_stream(config)
  defense = config.defense
  transform = recipe.input_transform_from_config(config.train.augment)
  if defense.name == "gaussian_smoothing":
    transform = defenses.compose(transform, defenses.gaussian_smoothing(
        defense.smoothing_radius, defense.smoothing_sigma))
  elif defense.name == "additive_noise":
    transform = defenses.compose(
        transform, defenses.additive_noise(defense.noise_epsilon / 255))
  elif defense.name not in ("none", "dp_sgd"):
    raise ValueError(f"unknown defense {defense.name!r}; use none, "
                     "gaussian_smoothing, additive_noise or dp_sgd.")
  if defense.name == "dp_sgd":
    return defenses.train_model_dp_sgd(
        config, data, l2_clip=defense.dp_l2_clip,
        noise_multiplier=defense.dp_noise_multiplier,
        stream=stream, input_transform=transform, workdir=workdir)
  return recipe.train_model(config, data, workdir=workdir,
                            stream=stream,
                            input_transform=transform)


def _poison(config, train: Dataset, surrogate: recipe.TrainedModel | None,
            folder: str, ensemble: list[Any] | None = None
            ) -> tuple[Dataset, Any, dict[str, Any]]:
  """Crafts the configured poison; saves its key under ``folder``.

  ``ensemble``: surrogate variables the availability poisons align against
  in turn, instead of ``surrogate``'s alone.

  Returns:
    (the poisoned training set, the key, metrics about the poison).
  """
  key = jax.random.fold_in(jax.random.key(config.seed), POISON_STREAM)
  crafting_config = craft_config(config.poison)
  model = surrogate.model if surrogate else None
  variables = surrogate.variables if surrogate else None

  def retrain(data: Dataset, tag: str) -> Any:
    return recipe.train_model(config, data, workdir=os.path.join(folder, tag),
                              stream=STREAMS["surrogate"]).variables

  if config.method in availability.METHODS:
    variables = ensemble or variables
    poisoned, poison_key = availability.poison(
        train, config.method, crafting_config, key, model=model,
        variables=variables, target_fraction=config.poison.target_fraction,
        workdir=os.path.join(folder, "crafting"), retrain_surrogate=retrain)
    objective = poison_key.objective
  else:
    poisoned, poison_key, objective = alignment_watermark.mark(
        train, ALIGNMENT_WATERMARKS[config.method],
        alignment_watermark.AlignmentWatermarkConfig(
            **config.watermark.to_dict()),
        crafting_config, key, model=model, variables=variables,
        retrain_surrogate=retrain, workdir=folder)
  digest = poison_key.save(os.path.join(folder, "poison_key"))
  logging.info("%s: key saved in %s (manifest SHA-256 %s)", config.method,
               folder, digest)
  info = {"poison_key_digest": digest,
          "poisoned_samples": int(poison_key.poisoned_indices.size)}
  if not math.isnan(objective):  # random noise has no objective
    info["crafting_objective"] = float(objective)
  return poisoned, poison_key, info


@dataclasses.dataclass(frozen=True)
class CraftedPoison:
  """Steps 1-2 of the experiment: the data, the surrogate and the poison.

  Attributes:
    train, test: the clean training and test sets.
    surrogate: the model trained on ``train`` (None for ``random_noise``).
    poisoned: the released (poisoned) training set.
    key: the owner's key (an ``AvailabilityKey`` or a ``WatermarkKey``).
    info: metrics about the poison (key digest, samples, objective).
    folder: the crafting run's folder; the victims' folders lie inside.
  """

  train: Dataset
  test: Dataset
  surrogate: recipe.TrainedModel | None
  poisoned: Dataset
  key: Any
  info: dict[str, Any]
  folder: str


def train_surrogate(config, train: Dataset,
                    workdir: str) -> recipe.TrainedModel:
  """The surrogate on the clean training set (reused from ``workdir``)."""
  return recipe.train_model(config, train,
                            workdir=model_dir(workdir, "surrogate", config),
                            stream=STREAMS["surrogate"])


def train_surrogate_keeping_epochs(
    config, train: Dataset, workdir: str,
    epochs: tuple[int, ...]) -> tuple[recipe.TrainedModel, list[Any]]:
  """The surrogate and its variables after each of ``epochs``.

  The surrogate of :func:`train_surrogate`, trained (or reused) in a folder
  of its own that keeps a checkpoint after every epoch in ``epochs``. Each
  kept checkpoint records the surrogate's identity; one recorded for
  another run raises :class:`jaxwm.identity.StaleRunError` before any
  training.

  Returns:
    (the trained surrogate, [its variables after epoch e for e in epochs]).
  """
  num_epochs = config.train.num_epochs
  if not epochs or list(epochs) != sorted(set(epochs)) or not (
      1 <= epochs[0] and epochs[-1] <= num_epochs):
    raise ValueError(
        f"poison.surrogate_epochs={tuple(epochs)} must be increasing epochs "
        f"of the surrogate's training, in [1, {num_epochs}] "
        f"(train.num_epochs), e.g. (2, 5, 10, {num_epochs}).")
  folder = model_dir(workdir, "surrogate", config,
                     {"kept_epochs": list(epochs)})
  kept_dir = os.path.join(folder, "kept_epochs")
  kept = Checkpointer(kept_dir, max_to_keep=len(epochs))
  record = loop.checkpoint_identity(
      recipe.run_identity(config, stream=STREAMS["surrogate"]), train,
      train.labels, config.train.batch_size)

  def keep(epoch: int, state) -> None:
    if epoch in epochs and epoch not in kept.complete_steps():
      kept.save(epoch, state.variables(), {"epoch": epoch,
                                           "identity": record})

  try:
    for epoch in kept.complete_steps():
      identity.check(kept.read_metadata(epoch).get("identity"), record,
                     what=f"the surrogate kept after epoch {epoch}",
                     folder=kept_dir)
    surrogate = recipe.train_model(config, train, workdir=folder,
                                   stream=STREAMS["surrogate"],
                                   on_epoch_end=keep)
    missing = sorted(set(epochs) - set(kept.complete_steps()))
    if missing:
      raise ValueError(
          f"the surrogate in {folder} finished without its checkpoints after "
          f"epochs {missing}; delete {folder} to train it again.")
    members = [kept.restore(epoch, surrogate.variables)[0]
               for epoch in epochs]
  finally:
    kept.close()
  return surrogate, members


def craft_poison(config, workdir: str) -> CraftedPoison:
  """Trains (or reuses) the surrogate and crafts (or reuses) the poison."""
  train, test = recipe.load_datasets(config)
  logging.info("%s on %d %s training images", config.method, len(train),
               config.dataset)
  surrogate, ensemble = None, None
  epochs = tuple(config.poison.surrogate_epochs)
  if epochs and config.method not in availability.CRAFTED_METHODS:
    raise ValueError(
        f"poison.surrogate_epochs={epochs} applies to "
        f"{' and '.join(availability.CRAFTED_METHODS)}, not {config.method}; "
        "leave it empty.")
  if epochs:
    surrogate, ensemble = train_surrogate_keeping_epochs(config, train,
                                                         workdir, epochs)
  elif config.method != "random_noise":
    surrogate = train_surrogate(config, train, workdir)
  folder = model_dir(workdir, f"{config.method}_poison", config,
                     config.method, config.poison.to_dict(),
                     config.watermark.to_dict())
  poisoned, poison_key, info = _poison(config, train, surrogate, folder,
                                       ensemble)
  return CraftedPoison(train, test, surrogate, poisoned, poison_key, info,
                       folder)


def run_experiment(config, workdir: str,
                   metrics: dict[str, Any] | None = None) -> dict[str, Any]:
  """The whole experiment; returns the launcher's ``outcome`` mapping.

  Args:
    config: a config from ``configs/craft_poison.py``.
    workdir: where models, poisons and keys go (reused across runs).
    metrics: the dict to fill, stage by stage, as values are measured (the
      launcher's, so that a failure still reports them); default a new one.
      The metrics are those of the module docstring; the watermarks'
      ``verification`` holds each scenario's test result or the reason it
      could not be run.
  """
  metrics = {} if metrics is None else metrics
  crafted = craft_poison(config, workdir)
  train, test, poison_key = crafted.train, crafted.test, crafted.key
  metrics.update(crafted.info)
  victims = victim_config(config)
  victim = train_victim(victims, crafted.poisoned,
                        victim_dir(crafted.folder, "victim", victims))
  if config.method in availability.METHODS:
    metrics["test_accuracy"] = victim.evaluate(test)["accuracy"]
  else:
    metrics.update(watermark_metrics(victim.predict_proba, poison_key, test))
  clean = train_victim(victims, train,
                       victim_dir(workdir, "clean_victim", victims))
  clean_accuracy = clean.evaluate(test)["accuracy"]
  if config.method in availability.METHODS:
    metrics["clean_test_accuracy"] = clean_accuracy
  else:
    clean_metrics = watermark_metrics(clean.predict_proba, poison_key, test)
    metrics.update(benign_accuracy_clean_model=clean_accuracy,
                   asr_a_clean_model=clean_metrics["asr_a"],
                   d_p_clean_model=clean_metrics["d_p"])
    other = dataclasses.replace(poison_key, trigger=triggers.badnets_trigger(
        train.image_shape, size=config.watermark.patch_size,
        position=tuple(config.independent_trigger.patch_position),
        pattern=config.independent_trigger.patch_pattern))
    verdicts = scenarios.verify_scenarios(
        {"independent_t": victim.predict_proba,
         "independent_m": clean.predict_proba,
         "malicious": victim.predict_proba},
        poison_key, test, m=config.verify.m, tau=config.verify.tau,
        seed=config.verify.seed, keys={"independent_t": other})
    metrics.update(scenarios.scenario_metrics(verdicts, config.verify.alpha))
  return {"dataset": config.dataset, "model": config.model,
          "metrics": metrics}
