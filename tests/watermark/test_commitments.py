"""Tests of jaxwm.watermark.commitments: encoding format, known answers,
correctness and binding of Com / Open."""

import hashlib
import json
import os
import struct

import numpy as np
import pytest

from jaxwm.watermark import commitments

_VECTORS = os.path.join(os.path.dirname(__file__), "commitment_vectors.json")


def _vectors():
  with open(_VECTORS) as f:
    return json.load(f)["vectors"]


def _message(vector):
  if vector["kind"] == "label":
    return commitments.encode_label(vector["value"])
  values = np.array(vector["values"], dtype=vector["dtype"])
  return commitments.encode_array(values.reshape(vector["shape"]))


@pytest.mark.parametrize("index", range(len(_vectors())))
def test_known_answer_vectors(index):
  vector = _vectors()[index]
  message = _message(vector)
  assert message.hex() == vector["encoding"]
  opening = bytes.fromhex(vector["opening"])
  assert commitments.commit(message, opening).hex() == vector["commitment"]
  assert commitments.opens(bytes.fromhex(vector["commitment"]), message,
                           opening)


def test_array_encoding_is_the_documented_frame_recomputed_by_hand():
  x = np.arange(6, dtype=np.uint8).reshape(2, 3, 1)
  opening = bytes(range(32))
  field = lambda b: struct.pack(">Q", len(b)) + b
  encoding = (field(b"jaxwm/array/v1") + field(b"|u1") +
              field(struct.pack(">QQQ", 2, 3, 1)) + field(bytes(range(6))))
  digest = hashlib.sha256(
      field(b"jaxwm/commitment/v1") + field(opening) + field(encoding))
  assert commitments.encode_array(x) == encoding
  assert commitments.commit(encoding, opening) == digest.digest()
  assert digest.hexdigest() == _vectors()[0]["commitment"]


def test_label_encoding_is_tagged_8_byte_big_endian():
  assert commitments.encode_label(7) == (
      struct.pack(">Q", 14) + b"jaxwm/label/v1" + struct.pack(">QQ", 8, 7))
  assert commitments.encode_label(np.int32(7)) == commitments.encode_label(7)


def test_encoding_binds_dtype_shape_and_values_but_not_byte_order():
  x = np.arange(6, dtype=np.int32)
  encodings = {
      commitments.encode_array(x),
      commitments.encode_array(x.astype(np.int64)),
      commitments.encode_array(x.astype(np.float32)),
      commitments.encode_array(x.reshape(2, 3)),
      commitments.encode_array(x.reshape(3, 2)),
      commitments.encode_array(x + np.eye(1, 6, 5, dtype=np.int32)[0]),
  }
  assert len(encodings) == 6
  assert commitments.encode_array(x.astype(">i4")) == commitments.encode_array(
      x)
  assert commitments.encode_array(
      np.asfortranarray(x.reshape(2, 3))) == commitments.encode_array(
          x.reshape(2, 3))


def test_array_and_label_encodings_are_domain_separated():
  assert commitments.encode_label(7) != commitments.encode_array(
      np.array(7, np.int64))
  assert commitments.frame(b"ab", b"c") != commitments.frame(b"a", b"bc")


def test_commit_open_correctness_and_binding():
  message = commitments.encode_array(np.ones((4, 4, 3), np.uint8))
  opening = commitments.new_openings(1)[0].tobytes()
  commitment = commitments.commit(message, opening)
  assert len(commitment) == commitments.DIGEST_BYTES
  assert commitments.opens(commitment, message, opening)
  other = commitments.encode_array(np.ones((4, 4, 3), np.uint8) * 2)
  assert not commitments.opens(commitment, other, opening)
  assert not commitments.opens(commitment, message, bytes(32))
  assert not commitments.opens(commitment, message, opening[:31])


def test_new_openings_are_fresh_32_byte_rows():
  openings = commitments.new_openings(50)
  assert openings.shape == (50, 32) and openings.dtype == np.uint8
  assert len({row.tobytes() for row in openings}) == 50


def test_commit_each_and_open_each_match_single_calls():
  messages = [commitments.encode_label(k) for k in range(5)]
  openings = commitments.new_openings(5)
  digests = commitments.commit_each(messages, openings)
  assert digests[3].tobytes() == commitments.commit(messages[3],
                                                    openings[3].tobytes())
  assert commitments.open_each(digests, messages, openings).all()
  swapped = messages[::-1]
  np.testing.assert_array_equal(
      commitments.open_each(digests, swapped, openings),
      [False, False, True, False, False])


def test_bad_inputs_raise_with_the_fix():
  with pytest.raises(TypeError, match="dtype object"):
    commitments.encode_array(np.array([None]))
  with pytest.raises(TypeError, match="integer"):
    commitments.encode_label(1.0)
  with pytest.raises(ValueError, match="out of range"):
    commitments.encode_label(-1)
  with pytest.raises(ValueError, match="32 bytes"):
    commitments.commit(b"m", b"short")
  with pytest.raises(ValueError, match="one opening per message"):
    commitments.commit_each([b"m"], commitments.new_openings(2))
