"""Two more baselines of MOVE's comparison (its Tables III-VI), as owners
of :mod:`jaxwm.recipes.stealing_methods` (the interface of its module
docstring): Entangled Watermarks and a gradient-matching dataset
watermark. Each verifies a suspect by its own paper's test.
"""

from __future__ import annotations

import os
from typing import Any

import jax

from jaxwm.poison import alignment_watermark
from jaxwm.poison.methods import ALIGNMENT_WATERMARKS
from jaxwm.recipes import craft_poison, stealing_methods
from jaxwm.train import recipe
from jaxwm.watermark import entangled

# Key streams of these owners' models and draws (the victim's and the
# benign model's are stealing_methods').
SURROGATE_STREAM = 30
# Folded into jax.random.key(config.seed): the poisons' draws.
GRADIENT_MATCHING_STREAM = 1
# The alignment watermark that gradient matching crafts.
GRADIENT_MATCHING_METHOD = "sleeper_agent"


def _benign(run) -> recipe.TrainedModel:
  """The owner's model trained on its untouched half."""
  config = run.config
  return recipe.train_model(config, run.owner,
                            workdir=run.model_dir("benign", config),
                            stream=stealing_methods.BENIGN_STREAM)


class EntangledOwner:
  """Entangled Watermarks (:mod:`jaxwm.watermark.entangled`, block
  ``entangled``): the victim is the owner's model trained without the
  watermark (of its own key stream), trained on with the watermark batches
  and the SNNL term; a suspect is verified black-box by the one-sided
  t-test of its watermark success on triggered source-class test images
  against the benign model's.
  """

  def __init__(self, run):
    config = run.config
    block = config.entangled.to_dict()
    self.ewe = entangled.EntangledConfig.from_dict(block)
    self.run = run
    self.alpha = self.ewe.alpha
    base = recipe.train_model(
        config, run.owner,
        workdir=run.model_dir("victim_unmarked", config),
        stream=stealing_methods.VICTIM_STREAM)
    self.victim_parts = ("entangled", block)
    self.victim, self.key = entangled.embed(
        config, run.owner, base, self.ewe,
        workdir=run.model_dir("victim", config, *self.victim_parts),
        stream=stealing_methods.VICTIM_STREAM)
    self.benign = _benign(run)
    self.queries = entangled.query_images(self.key, run.test, self.ewe.m,
                                          config.seed)

  def summary(self) -> dict[str, Any]:
    def success(model):
      return float(entangled.watermark_success(
          model.predict, self.queries, self.key.target_class).mean())

    return {"name": "entangled",
            "patch_position": list(self.key.position),
            "victim_watermark_success": success(self.victim),
            "benign_watermark_success": success(self.benign)}

  def verdict(self, suspect: recipe.TrainedModel,
              suspect_config) -> dict[str, Any]:
    del suspect_config  # black-box
    test = entangled.verify(suspect.predict, self.benign.predict, self.key,
                            self.queries)
    return stealing_methods.verdict_record(test, self.alpha,
                                     test.rejects(self.alpha))


class GradientMatchingOwner:
  """A dataset watermark made by gradient matching (Sleeper Agent's
  clean-label, hidden-trigger poisons, crafted by the gradient-alignment
  engine; blocks ``poison`` and ``watermark`` as in
  ``configs/craft_poison.py``): a surrogate trained on the owner's half
  crafts the poisons, the victim trains on the poisoned half, and a suspect
  is verified black-box by the dataset watermark's one-sided paired t-test
  on triggered test images of the source class (block ``verify``).
  """

  def __init__(self, run):
    config = run.config
    self.run = run
    surrogate = recipe.train_model(
        config, run.owner, workdir=run.model_dir("surrogate", config),
        stream=SURROGATE_STREAM)
    poison, watermark = config.poison.to_dict(), config.watermark.to_dict()
    folder = run.model_dir("gradient_matching_poison", config, poison,
                           watermark)

    def retrain(data, tag):
      return recipe.train_model(config, data,
                                workdir=os.path.join(folder, tag),
                                stream=SURROGATE_STREAM).variables

    marked, self.key, _ = alignment_watermark.mark(
        run.owner, ALIGNMENT_WATERMARKS[GRADIENT_MATCHING_METHOD],
        alignment_watermark.AlignmentWatermarkConfig(**watermark),
        craft_poison.craft_config(config.poison),
        jax.random.fold_in(jax.random.key(config.seed),
                           GRADIENT_MATCHING_STREAM),
        model=surrogate.model, variables=surrogate.variables,
        retrain_surrogate=retrain, workdir=folder)
    self.victim_parts = ("gradient_matching", poison, watermark)
    self.victim = recipe.train_model(
        config, marked,
        workdir=run.model_dir("victim", config, *self.victim_parts),
        stream=stealing_methods.VICTIM_STREAM)
    self.benign = _benign(run)
    self.alpha = float(config.verify.alpha)

  def summary(self) -> dict[str, Any]:
    return {"name": "gradient_matching",
            "poisoned_samples": int(self.key.poisoned_indices.size)}

  def verdict(self, suspect: recipe.TrainedModel,
              suspect_config) -> dict[str, Any]:
    del suspect_config  # black-box
    return stealing_methods.dataset_watermark_verdict(self.run, self.key,
                                                      suspect)
