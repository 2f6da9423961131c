"""Short, stable names for the folders of checkpointed runs."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def fingerprint(*parts: Any) -> str:
  """16 hex digits of the SHA-256 of ``parts`` as canonical JSON.

  Used to name a model's checkpoint folder after everything it depends on
  (configs, seeds, key digests), so that a rerun with the same inputs finds
  and reuses it and a run with different inputs never does. Values JSON
  cannot encode are written with ``str``.
  """
  encoded = json.dumps(parts, sort_keys=True, default=str).encode("utf-8")
  return hashlib.sha256(encoded).hexdigest()[:16]
