"""Black-box dataset ownership verification (UBW paper, Section 4.2).

Given only a suspect model's predicted probabilities, the owner samples m
of the candidate test images (the images the watermark acts on) that the
suspect classifies correctly, queries the model on each image x and on its
watermarked version G(x), and runs the one-sided paired t-test of
:func:`jaxwm.verify.ttest.paired_ttest`.

* Untargeted watermarks (UBW): P = the probability of the true label y;
  the watermark lowers it, H1: P_b > P_m + tau (Proposition 1).
* Targeted watermarks (BadNets, Blended, WaNet, ...): the watermark raises
  the probability of the target label y_t, so the test runs on the
  probability of *not* predicting it, P = 1 - f(.)_{y_t}; H1 then reads
  f(G(x))_{y_t} > f(x)_{y_t} + tau, and Delta P is the rise of the target
  probability.

The watermark enters only as the candidates, the function G and the target
label: :func:`jaxwm.poison.verify_dataset_ownership` derives them from a
``WatermarkKey``.
"""

from __future__ import annotations

from typing import Callable

from absl import logging
import jax
import numpy as np

from jaxwm.config_checks import Fields, Problem, raise_problems
from jaxwm.data.dataset import Dataset
from jaxwm.verify.ttest import paired_ttest
from jaxwm.verify.ttest import PairedTTestResult

# Float images [B, H, W, C] in [0, 1] -> probabilities [B, K].
PredictProba = Callable[[np.ndarray], np.ndarray]
# uint8 images [B, H, W, C] -> their watermarked versions G(x), same shape.
MarkImages = Callable[[np.ndarray], np.ndarray]


class TooFewCorrectError(ValueError):
  """The suspect classifies fewer than 2 eligible test images correctly, so
  the test cannot be run on it (its result is unknown, not negative)."""

# Probabilities may exceed [0, 1] by float32 rounding; more is an error.
_PROBABILITY_SLACK = 1e-5


def query_probabilities(predict_proba: PredictProba, images: np.ndarray,
                        num_classes: int) -> np.ndarray:
  """predict_proba on uint8 [B, H, W, C] images -> float64 [B, K] in [0, 1]."""
  probabilities = np.asarray(
      predict_proba(images.astype(np.float32) / 255.0), np.float64)
  expected = (images.shape[0], num_classes)
  if probabilities.shape != expected:
    raise ValueError(
        f"predict_proba returned shape {probabilities.shape}, expected "
        f"{expected}: one probability vector over the K classes per image.")
  if not np.all(np.isfinite(probabilities)) or (
      probabilities.min() < -_PROBABILITY_SLACK or
      probabilities.max() > 1 + _PROBABILITY_SLACK):
    raise ValueError(
        "predict_proba returned values outside [0, 1] or NaN; it must return "
        "probabilities (apply softmax to logits).")
  return np.clip(probabilities, 0.0, 1.0)


def _correctly_classified_sample(
    predict_proba: PredictProba, test_dataset: Dataset,
    candidates: np.ndarray, m: int, seed: int,
    batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Up to m random candidates the model classifies correctly.

  Walks the candidates in a seeded random order, querying the model batch by
  batch, until m correct ones are found: a uniform sample of the correctly
  classified candidates that spends few queries.

  Returns:
    (indices int64 [m'], benign probabilities float64 [m', K]), m' <= m.
  """
  order = candidates[np.asarray(
      jax.random.permutation(jax.random.key(seed), candidates.size))]
  chosen, probabilities = [], []
  found = 0
  for start in range(0, order.size, batch_size):
    batch = order[start:start + batch_size]
    batch_probabilities = query_probabilities(
        predict_proba, test_dataset.images[batch], test_dataset.num_classes)
    correct = np.argmax(batch_probabilities, axis=1) == (
        test_dataset.labels[batch])
    chosen.append(batch[correct])
    probabilities.append(batch_probabilities[correct])
    found += int(correct.sum())
    if found >= m:
      break
  if not chosen:
    return np.zeros(0, np.int64), np.zeros((0, test_dataset.num_classes))
  return np.concatenate(chosen)[:m], np.concatenate(probabilities)[:m]


def _check_arguments(m: int, tau: float, seed: int, batch_size: int) -> None:
  """Raises one ConfigError naming every bad argument, as typed."""
  problems: list[Problem] = []
  arguments = Fields(dict(m=m, tau=tau, seed=seed, batch_size=batch_size), "",
                     problems, flags=False)
  arguments.integer("m", 2, example=100)
  arguments.number("tau", 0, 1, example=0.25)
  arguments.integer("seed", 0, example=0)
  arguments.integer("batch_size", 1, example=256)
  raise_problems(problems)


def verify_ownership(predict_proba: PredictProba, test_dataset: Dataset,
                     candidates: np.ndarray, mark: MarkImages, *,
                     target_label: int | None = None, m: int = 100,
                     tau: float = 0.25, seed: int = 0, batch_size: int = 256,
                     candidates_name: str = "candidate test images"
                     ) -> PairedTTestResult:
  """Tests whether a suspect model was trained on a watermarked dataset.

  Args:
    predict_proba: the black-box suspect: float images [B, H, W, C] in
      [0, 1] -> probabilities [B, K].
    test_dataset: held-out images with true labels, same classes as the
      watermarked training set.
    candidates: int [P], the rows of ``test_dataset`` the watermark acts
      on (e.g. its source classes without the target class).
    mark: the watermark's G on uint8 images [B, H, W, C].
    target_label: the target class of a targeted watermark; None for an
      untargeted one.
    m: how many images to test (100 in Appendix C.2); if fewer candidates
      are classified correctly, all of them are used (a warning is logged)
      and the result's ``m`` says how many.
    tau: the margin of H0 (Section 5.3 uses 0.25).
    seed: seeds the random choice of test images.
    batch_size: images per call of ``predict_proba``.
    candidates_name: what the candidates are, for the error message.

  Returns:
    The PairedTTestResult; the model is judged trained on the dataset when
    its p-value is below the significance level.

  Raises:
    ConfigError: before any query, for every bad m, tau, seed or
      batch_size.
    TooFewCorrectError: fewer than 2 candidates classified correctly.
    ValueError: a ``target_label`` that is no class of the test set, or a
      ``predict_proba`` that does not return probabilities over its
      classes.
  """
  _check_arguments(m, tau, seed, batch_size)
  num_classes = test_dataset.num_classes
  if target_label is not None and not 0 <= target_label < num_classes:
    raise ValueError(
        f"target_label={target_label} is not a class of the test set "
        f"(0..{num_classes - 1}); pass the watermark's target class, or "
        "None for an untargeted watermark.")
  candidates = np.asarray(candidates, np.int64)
  indices, benign = _correctly_classified_sample(
      predict_proba, test_dataset, candidates, int(m), int(seed),
      int(batch_size))
  if indices.size < 2:
    raise TooFewCorrectError(
        f"only {indices.size} of the {candidates.size} {candidates_name} "
        "are classified correctly by the suspect model; the test needs at "
        "least 2. Use a larger test set, or a suspect trained long enough "
        "to beat chance on those classes.")
  if indices.size < m:
    logging.warning("Only %d eligible, correctly classified test images; "
                    "testing with m=%d instead of %d.", indices.size,
                    indices.size, m)
  marked = np.concatenate([
      query_probabilities(
          predict_proba,
          mark(test_dataset.images[indices[start:start + batch_size]]),
          num_classes)
      for start in range(0, indices.size, batch_size)])
  if target_label is not None:
    p_benign = 1.0 - benign[:, target_label]
    p_marked = 1.0 - marked[:, target_label]
  else:
    rows = np.arange(indices.size)
    true_labels = test_dataset.labels[indices]
    p_benign = benign[rows, true_labels]
    p_marked = marked[rows, true_labels]
  return paired_ttest(p_benign, p_marked, tau)
