"""Tests of jaxwm.watermark.transcript: determinism, binding, uniformity."""

import numpy as np
from scipy import stats

from jaxwm.watermark.transcript import Transcript


def _challenge(protocol="p", messages=(("session", b"s"), ("statement", b"x")),
               label="open", population=40, count=10):
  transcript = Transcript(protocol)
  for name, value in messages:
    transcript.append(name, value)
  return transcript.challenge_subset(label, population, count)


def test_identical_transcripts_give_identical_challenges():
  np.testing.assert_array_equal(_challenge(), _challenge())


def test_every_absorbed_item_changes_the_challenge():
  base = _challenge()
  variants = [
      _challenge(protocol="q"),
      _challenge(label="audit"),
      _challenge(messages=(("session", b"t"), ("statement", b"x"))),
      _challenge(messages=(("session", b"s"), ("statement", b"y"))),
      _challenge(messages=(("statement", b"x"), ("session", b"s"))),
      _challenge(messages=(("session", b"s"), ("statemen", b"tx"))),
      _challenge(messages=(("session", b"s"),)),
  ]
  for variant in variants:
    assert not np.array_equal(base, variant)


def test_challenges_are_absorbed_so_successive_ones_differ():
  transcript = Transcript("p")
  first = transcript.challenge_subset("c", 1000, 5)
  assert not np.array_equal(first, transcript.challenge_subset("c", 1000, 5))


def test_challenge_is_a_sorted_distinct_subset():
  chosen = _challenge(population=400, count=200)
  assert chosen.shape == (200,) and chosen.dtype == np.int64
  assert np.all(np.diff(chosen) > 0) and 0 <= chosen[0] and chosen[-1] < 400


def test_indices_are_uniform_over_sessions():
  # Each index is chosen with probability p = count / population per session.
  # For draws without replacement the Pearson statistic is
  # (population / (population - 1)) (1 - p) chi2(population - 1); rescaled.
  population, count, sessions = 60, 20, 1500
  counts = np.zeros(population)
  for session in range(sessions):
    counts[_challenge(messages=(("session", str(session).encode()),),
                      population=population, count=count)] += 1
  expected = sessions * count / population
  p = count / population
  statistic = np.sum((counts - expected)**2 / expected) / (1 - p) * (
      (population - 1) / population)
  assert stats.chi2.sf(statistic, population - 1) > 0.01
