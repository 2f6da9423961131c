"""jaxwm.fingerprint: stable folder names for checkpointed runs."""

import hashlib

from jaxwm.fingerprint import fingerprint


def test_known_answer_and_canonical_order():
  # Canonical JSON of the tuple of parts: '[{"a": 1, "b": [2, 3]}, "x"]'.
  expected = hashlib.sha256(b'[{"a": 1, "b": [2, 3]}, "x"]').hexdigest()[:16]
  assert fingerprint({"a": 1, "b": (2, 3)}, "x") == expected
  assert fingerprint({"b": (2, 3), "a": 1}, "x") == expected


def test_any_change_gives_another_name():
  names = {fingerprint(0, "cnn"), fingerprint(1, "cnn"),
           fingerprint(0, "resnet18"), fingerprint("0", "cnn"),
           fingerprint(0, "cnn", None)}
  assert len(names) == 5
