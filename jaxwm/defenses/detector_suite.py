"""Every detector against one watermarked model, by the UBW paper's protocol.

:func:`run_detectors` is what a removal-and-detection launcher calls for a
model: Neural Cleanse on the clean test set; for a dataset watermark also
STRIP and Grad-CAM on ``num_images`` random test images the watermark acts
on, with its trigger (UBW paper, Appendix G.1-G.3), and spectral signatures
and activation clustering on the training set as trained on, judged against
the watermark key's poisoned samples (Appendix G.4). For a benign model
(no watermark key) only Neural Cleanse runs: a clean model should not be
flagged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from jaxwm.data.dataset import Dataset
from jaxwm.defenses import activation_clustering as ac_lib
from jaxwm.defenses import activations
from jaxwm.defenses import filtering
from jaxwm.defenses import grad_cam as grad_cam_lib
from jaxwm.defenses import neural_cleanse as nc_lib
from jaxwm.defenses import spectral_signatures as ss_lib
from jaxwm.defenses import strip as strip_lib
from jaxwm.models.common import FEATURES
from jaxwm.poison import triggers
from jaxwm.poison.watermark_key import WatermarkKey


@dataclasses.dataclass(frozen=True)
class DetectorSuiteConfig:
  """Settings of :func:`run_detectors`.

  Attributes:
    num_images: triggered test images for STRIP and Grad-CAM, and as many
      clean ones for STRIP (100, as the UBW paper).
    neural_cleanse: Neural Cleanse's settings.
    strip: STRIP's settings.
    activation_clustering: activation clustering's settings.
    spectral_removal_factor: spectral signatures remove this times the
      poisoning rate of every class (1.5).
    representation: the sown activation the dataset filters read.
    grad_cam_layer: the layer Grad-CAM explains; None for the last
      feature-map layer.
  """

  num_images: int = 100
  neural_cleanse: nc_lib.NeuralCleanseConfig = nc_lib.NeuralCleanseConfig()
  strip: strip_lib.StripConfig = strip_lib.StripConfig()
  activation_clustering: ac_lib.ActivationClusteringConfig = (
      ac_lib.ActivationClusteringConfig())
  spectral_removal_factor: float = 1.5
  representation: str = FEATURES
  grad_cam_layer: str | None = None

  def __post_init__(self):
    if self.num_images < 1:
      raise ValueError(f"num_images must be >= 1, got {self.num_images}.")


@dataclasses.dataclass(frozen=True)
class DetectorReport:
  """What each detector found; None where it did not run.

  Attributes:
    neural_cleanse: always.
    strip: STRIP on triggered and clean test images.
    grad_cam: Grad-CAM against the trigger's region (None also for a
      warping trigger, which has no region).
    spectral_signatures: the filter's flags and scores on the training set.
    spectral_filtering: their :class:`~jaxwm.defenses.filtering.
      FilteringReport` against the poisoned samples.
    activation_clustering: likewise for activation clustering.
    clustering_filtering: its filtering report.
    triggered: uint8 [N, H, W, C], the triggered test images STRIP and
      Grad-CAM ran on (for figures).
  """

  neural_cleanse: nc_lib.NeuralCleanseResult
  strip: strip_lib.StripResult | None = None
  grad_cam: grad_cam_lib.TriggerSaliency | None = None
  spectral_signatures: ss_lib.SpectralSignaturesResult | None = None
  spectral_filtering: filtering.FilteringReport | None = None
  activation_clustering: ac_lib.ActivationClusteringResult | None = None
  clustering_filtering: filtering.FilteringReport | None = None
  triggered: np.ndarray | None = None

  def to_dict(self) -> dict[str, Any]:
    """The JSON record of a launcher's results: one entry per detector
    (null where it did not run), the filters' settings and reports merged."""

    def record(*parts):
      if parts[0] is None:
        return None
      return {k: v for part in parts for k, v in part.to_dict().items()}

    return {
        "neural_cleanse": record(self.neural_cleanse),
        "strip": record(self.strip),
        "grad_cam": record(self.grad_cam),
        "spectral_signatures": record(self.spectral_signatures,
                                      self.spectral_filtering),
        "activation_clustering": record(self.activation_clustering,
                                        self.clustering_filtering),
    }


def _split_test(eligible: np.ndarray, num_test: int, count: int,
                key: jax.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(``count`` random eligible indices to trigger, ``count`` other clean
  test indices, the remaining test indices: STRIP's overlay pool)."""
  if eligible.size < count or num_test < 2 * count + 1:
    raise ValueError(
        f"{eligible.size} eligible of {num_test} test images cannot give "
        f"{count} triggered, {count} clean and an overlay pool; lower "
        "num_images.")
  key_triggered, key_clean = jax.random.split(key)
  chosen = np.sort(eligible[np.asarray(
      jax.random.permutation(key_triggered, eligible.size))[:count]])
  rest = np.setdiff1d(np.arange(num_test), chosen)
  rest = rest[np.asarray(jax.random.permutation(key_clean, rest.size))]
  return chosen, np.sort(rest[:count]), np.sort(rest[count:])


def run_detectors(model: Any, variables: Any, test: Dataset, key: jax.Array,
                  config: DetectorSuiteConfig | None = None, *,
                  train: Dataset | None = None,
                  watermark_key: WatermarkKey | None = None,
                  eligible: np.ndarray | None = None) -> DetectorReport:
  """Runs the detectors on a (possibly) watermarked model.

  Args:
    model: a jaxwm model.
    variables: its variables.
    test: the clean test set (Neural Cleanse's clean images; STRIP's and
      Grad-CAM's inputs).
    key: jax.random key of every random choice.
    config: settings; default :class:`DetectorSuiteConfig`.
    train: the training set as the model was trained on (poisons included).
    watermark_key: the dataset watermark's key (its trigger and poisoned
      samples).
    eligible: int [E], the test samples the watermark acts on (e.g. its
      source classes minus the target class).
    ``train``, ``watermark_key`` and ``eligible`` are given together, or all
    left None for a model without a dataset watermark.

  Returns:
    A :class:`DetectorReport`.
  """
  config = config or DetectorSuiteConfig()
  given = [value is not None for value in (train, watermark_key, eligible)]
  if any(given) and not all(given):
    raise ValueError("pass train, watermark_key and eligible together (a "
                     "watermarked model), or none of them (a benign one).")
  key_nc, key_split, key_strip, key_ac = jax.random.split(key, 4)
  cleanse = nc_lib.neural_cleanse(model, variables, test.images, key_nc,
                                  config.neural_cleanse)
  if watermark_key is None:
    return DetectorReport(cleanse)
  if len(train) != watermark_key.num_samples:
    raise ValueError(
        f"train has {len(train)} samples but the watermark key was drawn on "
        f"{watermark_key.num_samples}; pass the marked training set.")
  chosen, clean, pool = _split_test(np.asarray(eligible), len(test),
                                    config.num_images, key_split)
  triggered = watermark_key.apply_trigger_uint8(test.images[chosen])
  strip = strip_lib.strip(model, variables, triggered, test.images[clean],
                          test.images[pool], key_strip, config.strip)
  saliency = None
  if isinstance(watermark_key.trigger, triggers.BlendTrigger):
    saliency = grad_cam_lib.trigger_saliency(
        model, variables, test.images[chosen], triggered,
        grad_cam_lib.trigger_region(watermark_key.trigger),
        config.grad_cam_layer)
  representations = activations.layer_activations(
      model, variables, train.images, config.representation)
  spectral = ss_lib.spectral_signatures(
      representations, train.labels, watermark_key.poison_rate,
      config.spectral_removal_factor)
  clustering = ac_lib.activation_clustering(
      representations, train.labels, key_ac, config.activation_clustering)
  poisoned = watermark_key.poisoned_indices
  return DetectorReport(
      cleanse, strip, saliency, spectral, spectral.report(poisoned),
      clustering, clustering.report(poisoned), triggered)
