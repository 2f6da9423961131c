"""The README's command-line flow runs as written, on digits: mark, train a
suspect, verify it as a saved model, through exported queries answered by
a model in a file of its own, and as a function in that file."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import stat
import subprocess
import sys

import tiny

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
ROOT = README.parent
SECTION = "## Verifying a suspect from the command line"


def _bash_block() -> str:
  text = README.read_text()
  assert SECTION in text, f"README.md lost its section {SECTION!r}"
  return text.split(SECTION, 1)[1].split("```bash", 1)[1].split("```")[0]


def _jaxwm_on_path(tmp_path) -> str:
  """A PATH with ``jaxwm``: the installed entry point, or, where this
  checkout is not installed, one running ``python -m jaxwm.cli``."""
  if shutil.which("jaxwm"):
    return os.environ["PATH"]
  shim = tmp_path / "bin" / "jaxwm"
  shim.parent.mkdir()
  shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m jaxwm.cli "$@"\n')
  shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
  return f"{shim.parent}{os.pathsep}{os.environ['PATH']}"


def test_readme_commands_mark_train_and_verify_three_ways(tmp_path):
  script = _bash_block().replace("/tmp/", f"{tmp_path}/")
  env = {**os.environ, "PATH": _jaxwm_on_path(tmp_path),
         "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
  env["XLA_FLAGS"] = tiny.xla_flags(1)  # one device, as a user runs it
  done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=600,
                        check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  out = done.stdout
  assert re.search(r"^digest +[0-9a-f]{64}$", out, re.M)
  assert (tmp_path / "jaxwm_owner" / "marked.npz").is_file()
  assert (tmp_path / "jaxwm_answers.npz").is_file()
  suspects = re.findall(r"^suspect +(.*)$", out, re.M)
  assert [s.rsplit("(", 1)[1] for s in suspects] == [
      "saved jaxwm model)", "answers to exported queries)", "function)"]
  # The three routes query one model: one p-value, one decision.
  p_values = re.findall(r"^p +(\S+)$", out, re.M)
  decisions = re.findall(r"^decision +(\S+):", out, re.M)
  assert len(p_values) == 3 and len(set(p_values)) == 1, out
  assert len(decisions) == 3 and len(set(decisions)) == 1, out
  assert re.findall(r"^alpha +(\S+)$", out, re.M) == ["0.01"] * 3
