"""The meta-classifier, trained by the engine, and the MOVE pipeline on
digits: it separates the victim from the benign model on images it never
saw, and the verification never reuses its training images."""

import dataclasses

import numpy as np
import pytest

from jaxwm.train import recipe
from jaxwm.watermark import move
from jaxwm.watermark.move import meta_classifier
from jaxwm.watermark.move import pipeline


@pytest.fixture(scope="module")
def white_box_meta(move_config, marked, victim, benign):
  return move.train_meta_classifier(move_config, marked[1], victim, benign,
                                    move.WHITE_BOX)


@pytest.fixture(scope="module")
def sign_meta(move_config, marked, victim, benign):
  """A white-box meta-classifier on the paper's gradient-sign features."""
  config = dataclasses.replace(move_config,
                               white_box_features="gradient_signs")
  return config, move.train_meta_classifier(config, marked[1], victim,
                                            benign, move.WHITE_BOX)


@pytest.fixture(scope="module")
def unseen_victim_like(train_config, marked):
  """Three models trained like the victim, from streams no other model
  uses: the meta-classifiers never see them."""
  return [recipe.train_model(train_config, marked[0], stream=stream)
          for stream in (7, 8, 9)]


@pytest.fixture(scope="module")
def black_box_meta(move_config, marked, victim, benign):
  return move.train_meta_classifier(move_config, marked[1], victim, benign,
                                    move.BLACK_BOX)


def test_engine_fits_separable_feature_vectors():
  rng = np.random.default_rng(0)
  direction = rng.normal(size=12)

  def draw(sign):  # Gaussians 2 |direction| = 4.9 deviations apart: 99% Bayes
    return rng.normal(size=(96, 12)) + sign * direction

  victim, benign = draw(1), draw(-1)
  config = meta_classifier.MetaClassifierConfig(
      num_epochs=20, batch_size=32, learning_rate=0.01)
  meta = meta_classifier.train_meta_classifier(victim, benign, config)
  assert meta.accuracy(draw(1), draw(-1)) > 0.95
  probabilities = meta.victim_probability(victim)
  assert probabilities.shape == (96,) and probabilities.dtype == np.float64
  with pytest.raises(ValueError, match="trained on 12"):
    meta.victim_probability(victim[:, :5])


def test_white_box_meta_classifier_separates_victim_from_benign(
    move_config, marked, victim, benign, white_box_meta):
  # Measured (seed 0): 0.71 on the 29 held-out transformed digits of each.
  accuracy = move.held_out_accuracy(move_config, marked[1], white_box_meta,
                                    victim, benign, move.WHITE_BOX)
  assert accuracy >= 0.65


def test_white_box_meta_classifier_ranks_unseen_victim_like_models_higher(
    move_config, marked, references, unseen_victim_like, white_box_meta):
  """The default features do not follow the order of hidden units: models
  trained like the victim from other initialisations score above benign
  models the meta-classifier never saw."""
  key = marked[1]

  def mean_confidence(model):
    return white_box_meta.victim_probability(pipeline.features(
        move_config, key, key.verification_positions, model,
        move.WHITE_BOX)).mean()

  victim_like = [mean_confidence(m) for m in unseen_victim_like]
  benign = [mean_confidence(m) for m in references]
  # Measured (seed 0): 0.50-0.53 against 0.32-0.46 (means 0.51, 0.41).
  assert np.mean(victim_like) > np.mean(benign) + 0.05


def test_black_box_meta_classifier_separates_victim_from_benign(
    move_config, marked, victim, benign, black_box_meta):
  # Measured (seed 0): 0.81 on the 29 held-out transformed digits.
  accuracy = move.held_out_accuracy(move_config, marked[1], black_box_meta,
                                    victim, benign, move.BLACK_BOX)
  assert accuracy >= 0.7


def test_victim_is_verified_and_benign_model_is_not(marked, victim,
                                                    references, sign_meta):
  # The paper's sign features recognise the very model they were trained
  # on (the victim: a direct copy) on images they never saw, which isolates
  # the verification's own mechanics here.
  move_config, white_box_meta = sign_meta
  key = marked[1]
  stolen = move.verify(move_config, key, white_box_meta, victim, references,
                       move.WHITE_BOX)
  assert stolen.stolen and stolen.test.p_value < 0.01
  assert stolen.reference.p_value < 0.01
  assert stolen.test.m == 10 and stolen.test.delta_p > 0.5
  record = stolen.to_dict()
  assert record["decision"] == "reject_h0" and record["alpha"] == 0.01
  assert record["p_value"] == max(record["paired_p_value"],
                                  record["reference_p_value"])
  assert len(record["reference_scores"]) == len(references)
  # A reference against itself: every difference is 0, p = 1.
  itself = move.verify(move_config, key, white_box_meta, references[0],
                       references, move.WHITE_BOX)
  assert not itself.stolen and itself.test.p_value == 1.0
  assert itself.p_value == 1.0


def _fit_recorder(monkeypatch, meta):
  """Replaces C's fitting by a record of its inputs' sizes; returns ``meta``
  (a C trained before) so that no test here trains one again."""
  sizes = []

  def record(victim_features, benign_features, *args, **kwargs):
    sizes.append((len(victim_features), len(benign_features)))
    return meta

  monkeypatch.setattr(meta_classifier, "train_meta_classifier", record)
  return sizes


def test_verification_uses_only_rows_the_meta_classifier_never_saw(
    move_config, marked, victim, benign, black_box_meta, monkeypatch):
  key = marked[1]
  used = {"train": set(), "verify": set()}
  stage = ["train"]
  features = pipeline.features

  def recording(config, key, positions, model, setting):
    used[stage[0]].update(positions.tolist())
    return features(config, key, positions, model, setting)

  monkeypatch.setattr(pipeline, "features", recording)
  _fit_recorder(monkeypatch, black_box_meta)
  meta = move.train_meta_classifier(move_config, key, victim, benign,
                                    move.BLACK_BOX)
  stage[0] = "verify"
  for trial in range(3):
    move.verify(move_config, key, meta, victim, [benign, victim],
                move.BLACK_BOX, trial=trial)
  assert used["train"] == set(key.meta_positions.tolist())
  assert used["verify"] <= set(key.verification_positions.tolist())
  assert not used["train"] & used["verify"]


def test_several_models_per_class_are_stacked(move_config, marked, victim,
                                              benign, black_box_meta,
                                              monkeypatch):
  sizes = _fit_recorder(monkeypatch, black_box_meta)
  move.train_meta_classifier(move_config, marked[1], [victim, victim],
                             [benign, benign], move.BLACK_BOX)
  rows = len(marked[1].meta_positions)
  assert sizes == [(2 * rows, 2 * rows)]
