"""Tests of jaxwm.watermark.hash_draws: seeds, counter-mode blocks, rejection
sampling and uniform subsets."""

import hashlib
import itertools
import struct

import numpy as np
import pytest
from scipy import stats

from jaxwm.watermark.hash_draws import HashStream, seed_bytes


def _field(data: bytes) -> bytes:
  return struct.pack(">Q", len(data)) + data


def test_seed_bytes_fresh_or_reproducible():
  assert len(seed_bytes(None)) == 32
  assert seed_bytes(None) != seed_bytes(None)
  assert seed_bytes(5) == seed_bytes(np.int64(5)) != seed_bytes(6)
  assert seed_bytes(0) != seed_bytes(b"\x00")
  assert seed_bytes(b"abc") == seed_bytes(b"abc")


def test_seed_bytes_rejects_bad_seeds():
  with pytest.raises(ValueError, match=">= 0"):
    seed_bytes(-1)
  with pytest.raises(TypeError, match="int or bytes"):
    seed_bytes(1.5)
  with pytest.raises(TypeError, match="int or bytes"):
    seed_bytes(True)


def test_blocks_are_sha256_in_counter_mode():
  seed = bytes(range(32))
  stream = HashStream(seed, "images")
  prefix = _field(b"jaxwm/hash-stream/v1") + _field(seed) + _field(b"images")
  block0 = hashlib.sha256(prefix + _field(struct.pack(">Q", 0))).digest()
  block1 = hashlib.sha256(prefix + _field(struct.pack(">Q", 1))).digest()
  assert stream.token(40) == block0 + block1[:8]


def test_labels_give_independent_streams():
  seed = seed_bytes(1)
  assert HashStream(seed, "a").token() == HashStream(seed, "a").token()
  assert HashStream(seed, "a").token() != HashStream(seed, "b").token()


def test_randbelow_rejects_words_above_the_largest_multiple(monkeypatch):
  # For bound 10, words >= 2**64 - (2**64 % 10) = 2**64 - 6 are discarded.
  stream = HashStream(b"s", "x")
  words = iter([2**64 - 3, 2**64 - 7, 7])
  monkeypatch.setattr(stream, "_next_word", lambda: next(words))
  assert stream.randbelow(10) == (2**64 - 7) % 10 == 9
  assert stream.randbelow(10) == 7


def test_randbelow_is_uniform():
  stream = HashStream(seed_bytes(2), "uniform")
  draws = [stream.randbelow(7) for _ in range(7000)]
  assert stats.chisquare(np.bincount(draws, minlength=7)).pvalue > 0.01


def test_subset_is_uniform_over_all_subsets():
  stream = HashStream(seed_bytes(3), "subsets")
  subsets = list(itertools.combinations(range(5), 2))
  counts = np.zeros(len(subsets))
  for _ in range(3000):
    chosen = stream.subset(5, 2)
    assert chosen.dtype == np.int64 and list(chosen) == sorted(set(chosen))
    counts[subsets.index(tuple(chosen))] += 1
  assert stats.chisquare(counts).pvalue > 0.01


def test_subset_edge_cases():
  stream = HashStream(b"s", "edge")
  assert stream.subset(4, 0).size == 0
  np.testing.assert_array_equal(stream.subset(4, 4), [0, 1, 2, 3])
  with pytest.raises(ValueError, match="cannot choose 5 distinct"):
    stream.subset(4, 5)
  with pytest.raises(ValueError, match="bound"):
    stream.randbelow(0)
