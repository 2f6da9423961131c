"""The Dataset Inference owner of ``experiments/model_stealing.py``
(the interface of :mod:`jaxwm.recipes.stealing_methods`).

Dataset Inference needs no watermark: the victim is a plain model trained
on the owner's half, whose samples are the private set; the test set is
the public one. The owner's confidence regressor learns the victim's
distances (MinGD white-box, Blind Walk black-box; block
``dataset_inference``), and a suspect is verified on private and public
samples the regressor never saw by a one-sided Welch t-test
(:mod:`jaxwm.watermark.dataset_inference`).
"""

from __future__ import annotations

from typing import Any

from jaxwm.recipes import stealing_methods
from jaxwm.recipes.stealing_methods import Run
from jaxwm.train import recipe
from jaxwm.watermark import dataset_inference as di

# What the plain victim's folder depends on besides its training config.
VICTIM_PARTS = ("plain",)


class DatasetInferenceOwner:
  """Dataset Inference: distances to the decision boundary, a confidence
  regressor, a one-sided Welch t-test."""

  def __init__(self, run: Run):
    config = run.config
    self.run = run
    self.settings = di.DatasetInferenceConfig.from_dict(
        config.dataset_inference.to_dict())
    self.alpha = self.settings.alpha
    self.victim_parts = VICTIM_PARTS
    self.victim = recipe.train_model(
        config, run.owner,
        workdir=run.model_dir("victim", config, *VICTIM_PARTS),
        stream=stealing_methods.VICTIM_STREAM)
    self.benign = recipe.train_model(
        config, run.owner, workdir=run.model_dir("benign", config),
        stream=stealing_methods.BENIGN_STREAM)
    samples = di.draw_samples(self.settings, len(run.owner), len(run.test))
    self.verify_private = run.owner.take(samples.private_verify)
    self.verify_public = run.test.take(samples.public_verify)
    self.regressor = di.fit(self.settings, self.victim.model,
                            self.victim.variables,
                            run.owner.take(samples.private_train),
                            run.test.take(samples.public_train))

  def summary(self) -> dict[str, Any]:
    return {"name": "dataset_inference", "setting": self.settings.setting,
            "regressor_samples": self.settings.regressor_samples,
            "norms": list(self.settings.norms)}

  def verdict(self, suspect: recipe.TrainedModel,
              suspect_config) -> dict[str, Any]:
    del suspect_config  # distances need no architecture of the owner's.
    result = di.verify(self.settings, self.regressor, suspect.model,
                       suspect.variables, self.verify_private,
                       self.verify_public)
    return stealing_methods.verdict_record(
        result.test, result.alpha, result.stolen,
        m_public=result.test.m_other,
        mu_private=float(result.private_confidence.mean()),
        mu_public=float(result.public_confidence.mean()))
