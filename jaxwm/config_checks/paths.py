"""Checks of a launcher's paths: the folder it works in and the files it
writes, made before anything is trained so that a run never ends on a path
it cannot write."""

from __future__ import annotations

import os

from jaxwm.config_checks.core import Problem


def _nearest_existing(path: str) -> str:
  """``path`` or its closest ancestor that exists."""
  path = os.path.abspath(path)
  while not os.path.exists(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  return path


def _creatable(flag: str, path: str, what: str) -> list[Problem]:
  """Problems making ``path`` (a folder, with its missing parents)."""
  ancestor = _nearest_existing(path)
  if not os.path.isdir(ancestor):
    return [Problem(flag, path, f"{ancestor} is a file, so {what} cannot be "
                    "made there; choose a path under a folder.")]
  if not os.access(ancestor, os.W_OK | os.X_OK):
    return [Problem(flag, path, f"{ancestor} is not writable; choose a "
                    "folder you can write.")]
  return []


def workdir(path: str | os.PathLike | None,
            flag: str = "--workdir") -> list[Problem]:
  """A folder to work in: None (a new temporary folder), a writable folder,
  or a path where one can be made."""
  if path is None:
    return []
  path = os.fspath(path)
  if not path:
    return [Problem(flag, path, "is empty; give a folder, e.g. "
                    f"{flag}=/tmp/run, or leave it out for a new temporary "
                    "one.")]
  if not os.path.exists(path):
    return _creatable(flag, path, "the folder")
  if not os.path.isdir(path):
    return [Problem(flag, path, "is a file, not a folder; give a folder "
                    f"(made if missing), e.g. {flag}={path}_run.")]
  if not os.access(path, os.W_OK | os.X_OK):
    return [Problem(flag, path, "is not writable; choose a folder you can "
                    "write.")]
  return []


def output_file(path: str | os.PathLike | None,
                flag: str = "--output_json") -> list[Problem]:
  """A file to write at the end of the run: None (none), or a path that is
  not a folder, in a folder that exists or can be made."""
  if path is None:
    return []
  path = os.fspath(path)
  if not path:
    return [Problem(flag, path, "is empty; give a file name or leave it "
                    "out.")]
  if os.path.isdir(path):
    return [Problem(flag, path, "is a folder; give a file name, e.g. "
                    f"{flag}={os.path.join(path, 'results.json')}.")]
  if os.path.exists(path):
    if os.access(path, os.W_OK):
      return []
    return [Problem(flag, path, "exists and is not writable; choose "
                    "another file.")]
  return _creatable(flag, path, "the file")
