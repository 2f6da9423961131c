"""The colab/ notebooks: each runs end to end on CPU at its runlocal size,
is committed without outputs, and is linked from the README."""

from __future__ import annotations

import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "colab").glob("*.ipynb"))
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def _load(path: pathlib.Path):
  return nbformat.read(path, as_version=4)


def _parameters_cell(notebook):
  tagged = [cell for cell in notebook.cells
            if "parameters" in cell.metadata.get("tags", [])]
  assert len(tagged) == 1, "one cell tagged 'parameters' sets RUNLOCAL"
  return tagged[0]


def test_there_are_notebooks():
  assert {path.stem for path in NOTEBOOKS} >= {
      "ubw_p_fashion_mnist", "adi_model_watermark", "availability_poison",
      "move_model_stealing"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
  for cell in _load(path).cells:
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, (
          f"{path.name} has outputs; clear them before committing")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_readme_links_the_notebook(path):
  assert f"colab/{path.name}" in (ROOT / "README.md").read_text()


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST),
                    reason="apt-get install -y dataset-fashion-mnist")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_end_to_end_at_runlocal_size(path, tmp_path):
  notebook = _load(path)
  _parameters_cell(notebook).source = "RUNLOCAL = True"
  # The kernel starts in the repository root (configs/ is imported from
  # there); the notebook writes its pictures to a temporary folder.
  client = nbclient.NotebookClient(
      notebook, timeout=240, kernel_name="python3",
      resources={"metadata": {"path": str(ROOT)}})
  client.execute()
  errors = [output for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.outputs if output.output_type == "error"]
  assert not errors
  images = [output for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.outputs if "image/png" in output.get("data", {})]
  assert images, "the notebook shows its pictures"
