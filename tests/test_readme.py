"""The README's Python flow runs as written, on a small config."""

from __future__ import annotations

import pathlib

from jaxwm import secure_files

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Watermarking a dataset and verifying a suspect, from Python"


def _python_block(section: str) -> str:
  text = README.read_text()
  assert section in text, f"README.md lost its section {section!r}"
  return text.split(section, 1)[1].split("```python", 1)[1].split("```")[0]


def test_dataset_watermark_flow_keeps_and_passes_the_digest(tmp_path):
  code = _python_block(SECTION)
  assert 'digest=digest' in code
  # The same code on the small digits config, writing under tmp_path.
  code = code.replace('"fashion_mnist,cnn"', '"digits,runlocal"').replace(
      '"/tmp/', f'"{tmp_path}/')
  namespace = {}
  # pylint: disable-next=exec-used
  exec(compile(code, str(README), "exec"), namespace)
  assert namespace["digest"] == secure_files.manifest_digest(
      tmp_path / "owner_key")
  assert namespace["owner_key"].num_samples == len(namespace["marked"])
  assert 0.0 < namespace["result"].p_value <= 1.0
