"""docs/papers: every jaxwm name and config variant the pages cite exists,
and the pages cite papers, not files."""

from __future__ import annotations

import importlib
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs" / "papers").glob("*.md"))
PAPERS = ("ubw", "adi", "fowl", "move", "wild")


def _text() -> str:
  return "\n".join(page.read_text() for page in PAGES)


def _resolve(dotted: str):
  """The object a dotted name names: the longest importable module prefix,
  then attributes."""
  parts = dotted.split(".")
  for split in range(len(parts), 0, -1):
    try:
      found = importlib.import_module(".".join(parts[:split]))
    except ModuleNotFoundError:
      continue
    for attribute in parts[split:]:
      found = getattr(found, attribute)
    return found
  raise ModuleNotFoundError(dotted)


def test_one_page_per_paper_linked_from_the_index():
  index = (ROOT / "docs" / "papers" / "README.md").read_text()
  for paper in PAPERS:
    assert (ROOT / "docs" / "papers" / f"{paper}.md").exists()
    assert f"({paper}.md)" in index


NAMES = sorted(set(re.findall(r"jaxwm(?:\.[A-Za-z_]\w*)+", _text())))


def test_the_pages_cite_names():
  assert len(NAMES) > 50


@pytest.mark.parametrize("name", NAMES)
def test_every_cited_name_exists(name):
  _resolve(name)


VARIANTS = sorted(set(re.findall(r"configs/(\w+)\.py:([\w:,]+)", _text())))


@pytest.mark.parametrize("module, variant", VARIANTS)
def test_every_cited_config_variant_loads(module, variant):
  config = importlib.import_module(f"configs.{module}").get_config(variant)
  assert config.dataset in variant


def test_every_cited_file_exists():
  for path in set(re.findall(r"`((?:colab|docs|experiments)/[\w/.]+)`",
                             _text())):
    assert (ROOT / path).exists(), path


def test_the_pages_cite_papers_not_files():
  assert not re.search(r"\.txt\b|DESIGN\.md|shared/", _text())
