"""The import rules of the layout, read from the source with ``ast``.

Data flows one way: the method packages never import the recipes that
compose them, the statistics (``verify``, ``metrics``) import no training
or watermark code, the alignment engine sits below the watermarks that use
it, and every launcher finds its whole job in one recipe module.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
METHOD_PACKAGES = ("alignment", "data", "defenses", "metrics", "models",
                   "poison", "steal", "train", "verify", "watermark")
WATERMARK_PACKAGES = ("jaxwm.poison", "jaxwm.watermark", "jaxwm.alignment")
LAUNCHERS = sorted(path.stem for path in (ROOT / "experiments").glob("*.py")
                   if path.stem != "__init__")


def _imports(path: pathlib.Path) -> set[str]:
  """Every module ``path`` imports, anywhere in it (``from a import b``
  counts as ``a`` and ``a.b``)."""
  names = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module)
      names.update(f"{node.module}.{alias.name}" for alias in node.names)
  return names


def _modules(package: str) -> list[pathlib.Path]:
  return sorted((ROOT / "jaxwm" / package).rglob("*.py"))


def _within(name: str, packages) -> bool:
  return any(name == p or name.startswith(p + ".") for p in packages)


def _violations(paths, forbidden) -> list[str]:
  return [f"{path.relative_to(ROOT)} imports {name}" for path in paths
          for name in sorted(_imports(path)) if _within(name, forbidden)]


def test_the_parser_sees_imports_in_functions_and_from_packages(tmp_path):
  source = tmp_path / "module.py"
  source.write_text("from jaxwm import poison\n"
                    "def f():\n  import jaxwm.recipes.train\n")
  assert {"jaxwm.poison", "jaxwm.recipes.train"} <= _imports(source)


@pytest.mark.parametrize("package", METHOD_PACKAGES)
def test_no_method_package_imports_a_recipe(package):
  assert _modules(package), f"jaxwm/{package} has no modules"
  assert _violations(_modules(package), ("jaxwm.recipes",)) == []


def test_only_recipes_and_front_ends_import_recipes():
  """Launchers (experiments/) and the ``jaxwm`` command (jaxwm/cli) sit above
  the recipes; every other package sits below them."""
  outside = [path for path in (ROOT / "jaxwm").rglob("*.py")
             if not {"recipes", "cli"} & set(
                 path.relative_to(ROOT / "jaxwm").parts)]
  assert _violations(outside, ("jaxwm.recipes",)) == []


@pytest.mark.parametrize("package", ["verify", "metrics"])
def test_statistics_import_no_training_watermark_or_launcher_code(package):
  forbidden = ("jaxwm.train", "jaxwm.recipes", "jaxwm.results",
               "jaxwm.launch", *WATERMARK_PACKAGES)
  assert _violations(_modules(package), forbidden) == []


def test_the_alignment_engine_imports_no_watermark_package():
  assert _violations(_modules("alignment"),
                     ("jaxwm.poison", "jaxwm.watermark")) == []


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_each_launcher_calls_its_own_recipe(launcher):
  imported = _imports(ROOT / "experiments" / f"{launcher}.py")
  recipes = {name for name in imported if name.startswith("jaxwm.recipes.")}
  assert recipes == {f"jaxwm.recipes.{launcher}"}
  assert (ROOT / "jaxwm" / "recipes" / f"{launcher}.py").exists()
