"""Spectral signatures and activation clustering on a BadNets digits model,
and the filtering report."""

import jax
import numpy as np
import pytest

from jaxwm.defenses import activation_clustering as ac
from jaxwm.defenses import activations
from jaxwm.defenses import filtering
from jaxwm.defenses import spectral_signatures as ss

KEPT_POISONS = 30


def test_filtering_report_on_fixed_numbers():
  flagged = np.array([True, True, False, False, True, False])
  scores = np.array([0.9, 0.8, 0.1, 0.7, 0.6, 0.2])
  report = filtering.filtering_report(flagged, scores, np.array([0, 3]))
  assert report.successful_filtering_rate == pytest.approx(1 / 3)
  assert report.true_positive_rate == pytest.approx(1 / 2)
  assert report.false_positive_rate == pytest.approx(2 / 4)
  # Poisoned scores 0.9 and 0.7 beat 4 and 3 of the 4 clean ones.
  assert report.auroc == pytest.approx(7 / 8)
  nothing = filtering.filtering_report(np.zeros(6, bool), scores,
                                       np.array([0, 3]))
  assert nothing.successful_filtering_rate is None
  assert nothing.to_dict()["num_flagged"] == 0
  with pytest.raises(ValueError, match="poisoned and clean"):
    filtering.detection_auroc(scores, np.ones(6, bool))
  with pytest.raises(ValueError, match=r"\[0, 6\)"):
    filtering.poisoned_mask(np.array([6]), 6)


def test_outlier_scores_project_on_the_top_direction():
  # Rows +-(3, 0) and +-(0, 1): the top direction is the first axis.
  rows = np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
  np.testing.assert_allclose(ss.outlier_scores(rows), [9, 9, 0, 0],
                             atol=1e-12)
  with pytest.raises(ValueError, match="poison_fraction"):
    ss.spectral_signatures(rows, np.zeros(4, int), 0.0)


@pytest.fixture(scope="module")
def minority_poisons(badnets_digits):
  """(representations, labels, poisoned positions) of the training set with
  only ``KEPT_POISONS`` of its 144 poisons: about a fifth of class 0, the
  regime both defences are built for (at 10% poisoning, half of class 0 is
  poisoned and both halves of that class look alike to them)."""
  marked, key = badnets_digits.marked, badnets_digits.key
  clean = np.setdiff1d(np.arange(len(marked)), key.poisoned_indices)
  kept = np.r_[clean, key.poisoned_indices[:KEPT_POISONS]]
  trained = badnets_digits.trained
  features = activations.layer_activations(trained.model, trained.variables,
                                           marked.images[kept])
  return (features, marked.labels[kept],
          np.arange(clean.size, kept.size))


def test_layer_activations_are_the_sown_features(badnets_digits,
                                                 minority_poisons):
  features, labels, _ = minority_poisons
  assert features.shape == (labels.size, 32)
  trained = badnets_digits.trained
  blocks = activations.layer_activations(
      trained.model, trained.variables, badnets_digits.test.images[:5],
      "block1")
  assert blocks.shape == (5, 4 * 4 * 8)
  with pytest.raises(ValueError, match="block2"):
    activations.layer_activations(trained.model, trained.variables,
                                  badnets_digits.test.images[:5], "conv9")


def test_spectral_signatures_score_poisons_higher(minority_poisons):
  features, labels, poisoned = minority_poisons
  result = ss.spectral_signatures(features, labels, poison_fraction=0.1)
  report = result.report(poisoned)
  assert report.auroc > 0.9  # measured 0.976
  # 1.5 * 10% of each class is removed; most poisons are among them.
  assert report.num_flagged == sum(
      int(1.5 * 0.1 * np.sum(labels == k)) for k in range(10))
  assert report.true_positive_rate > 0.5  # measured 0.77
  assert report.false_positive_rate < 0.2


@pytest.mark.filterwarnings(
    "ignore:FastICA did not converge")  # with Chen et al.'s tolerance
def test_activation_clustering_separates_poisons(minority_poisons):
  features, labels, poisoned = minority_poisons
  result = ac.activation_clustering(features, labels, jax.random.PRNGKey(3))
  report = result.report(poisoned)
  assert report.auroc > 0.75  # measured 0.87
  assert report.true_positive_rate > report.false_positive_rate + 0.3
  # The poisons' class splits into a small cluster (a fifth of it).
  assert result.smaller_share[0] < 0.3
  assert result.to_dict()["flagged_classes"] == list(range(10))


def test_silhouette_analysis_removes_split_classes_only(minority_poisons):
  features, labels, poisoned = minority_poisons
  result = ac.activation_clustering(
      features, labels, jax.random.PRNGKey(3),
      ac.ActivationClusteringConfig(reduction="pca", analysis="silhouette"))
  assert 0 in result.to_dict()["flagged_classes"]
  assert result.class_flagged.sum() < 10
  report = result.report(poisoned)
  assert report.true_positive_rate > 0.9  # measured 1.0
  assert report.false_positive_rate < 0.2  # measured 0.11
