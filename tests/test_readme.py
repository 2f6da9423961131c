"""The README's Python snippets run as written, on a small config."""

from __future__ import annotations

import pathlib

import numpy as np

from jaxwm import secure_files

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Watermarking a dataset and verifying a suspect, from Python"
TRAINING = "## Training from Python"


def _python_block(section: str) -> str:
  text = README.read_text()
  assert section in text, f"README.md lost its section {section!r}"
  return text.split(section, 1)[1].split("```python", 1)[1].split("```")[0]


def _run_small(section: str, tmp_path) -> dict:
  """The section's code on the small digits config, writing under
  tmp_path; returns its namespace."""
  code = _python_block(section).replace(
      '"fashion_mnist,cnn"', '"digits,runlocal"').replace(
          '"/tmp/', f'"{tmp_path}/')
  namespace = {}
  # pylint: disable-next=exec-used
  exec(compile(code, str(README), "exec"), namespace)
  return namespace


def test_training_snippet_trains_evaluates_and_queries(tmp_path):
  namespace = _run_small(TRAINING, tmp_path)
  model, test_set = namespace["model"], namespace["test_set"]
  probabilities = namespace["probabilities"]
  assert probabilities.shape == (10, test_set.num_classes)
  np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(probabilities.argmax(axis=1),
                                model.predict(test_set.images[:10]))
  assert (tmp_path / "fmnist").is_dir()  # the checkpoints


def test_dataset_watermark_flow_keeps_and_passes_the_digest(tmp_path):
  assert 'digest=digest' in _python_block(SECTION)
  namespace = _run_small(SECTION, tmp_path)
  assert namespace["digest"] == secure_files.manifest_digest(
      tmp_path / "owner_key")
  assert namespace["owner_key"].num_samples == len(namespace["marked"])
  assert 0.0 < namespace["result"].p_value <= 1.0
