"""``jaxwm`` in-process: Adi keys by both rules from every kind of suspect,
and errors that name the value and the fix."""

from __future__ import annotations

import numpy as np
import pytest

from jaxwm import cli
from jaxwm.cli import suspects
from jaxwm.watermark import adi


@pytest.fixture
def adi_keys(tmp_path):
  """Saved keys of 30 triggers and the published digest."""
  marking_key, verification_key = adi.keygen(30, 10, (8, 8, 1), seed=0)
  marking_key.save(str(tmp_path / "mk"))
  verification_key.save(str(tmp_path / "vk"))
  return marking_key, verification_key.digest()


def _key_flags(tmp_path, digest):
  return [f"--key={tmp_path}/mk", f"--verification_key={tmp_path}/vk",
          f"--digest={digest}"]


def _run(argv, capsys) -> str:
  cli.main(argv)
  return capsys.readouterr().out


def test_adi_verdict_from_a_function_and_from_answers(adi_keys, tmp_path,
                                                      capsys):
  marking_key, digest = adi_keys
  labels = marking_key.triggers.labels
  # A marked model: it answers the trigger labels on the trigger images.
  (tmp_path / "marked.py").write_text(
      "import numpy as np\n"
      f"LABELS = np.array({labels.tolist()})\n"
      "def predict(images):\n"
      "  return np.eye(10)[LABELS[:len(images)]]\n")
  out = _run(["verify", "adi", *_key_flags(tmp_path, digest),
              f"--function={tmp_path}/marked.py:predict"], capsys)
  assert "agreement   30 of 30" in out
  assert "decision    reject_h0" in out
  assert "threshold   accepted" in out
  _run(["export-queries", "adi", *_key_flags(tmp_path, digest),
        f"--out={tmp_path}/q.npz"], capsys)
  queries = np.load(tmp_path / "q.npz")["images"]
  np.testing.assert_array_equal(
      queries, marking_key.triggers.float_images())
  # An unmarked model: every answer is class (label + 1) mod 10.
  np.savez(tmp_path / "a.npz",
           probabilities=np.eye(10)[(labels + 1) % 10])
  out = _run(["verify", "adi", *_key_flags(tmp_path, digest),
              f"--answers={tmp_path}/a.npz"], capsys)
  assert "agreement   0 of 30" in out
  assert "decision    fail_to_reject_h0" in out


def test_wrong_digest_exits_with_the_reason(adi_keys, tmp_path, capsys):
  with pytest.raises(SystemExit) as exited:
    cli.main(["verify", "adi", *_key_flags(tmp_path, "ab" * 32),
              f"--answers={tmp_path}/none.npz"])
  assert exited.value.code == 2
  assert "not the published" in capsys.readouterr().err


def test_a_digest_or_a_reason_is_required(adi_keys, tmp_path, capsys):
  with pytest.raises(SystemExit):
    cli.main(["verify", "adi", f"--key={tmp_path}/mk",
              f"--verification_key={tmp_path}/vk",
              f"--answers={tmp_path}/a.npz"])
  assert "--digest" in capsys.readouterr().err


def test_answers_of_the_wrong_length_are_refused(tmp_path):
  np.savez(tmp_path / "a.npz", probabilities=np.zeros((3, 10)))
  with pytest.raises(ValueError, match="3 queries|5 queries"):
    suspects.from_answers(str(tmp_path / "a.npz"),
                          np.zeros((5, 8, 8, 1), np.uint8))


def test_bad_function_spec_names_the_form():
  with pytest.raises(ValueError, match="MODULE:FUNCTION"):
    suspects.from_function("no_colon_here")
