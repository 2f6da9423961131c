"""The suspect model of ``jaxwm verify``: a saved jaxwm model, a Python
function, or the answers a model gave to exported queries.

Each is turned into ``predict(images) -> scores``: float32 images
[B, H, W, C] in [0, 1] -> float [B, K] probabilities (for the t-test of a
dataset watermark) or scores whose arg-max is the label (for an Adi key).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Callable

import numpy as np

from jaxwm import safe_npz

Predict = Callable[[np.ndarray], np.ndarray]
ANSWERS = "probabilities"
QUERIES = "images"


def from_function(spec: str) -> Predict:
  """``module:function`` or ``path/to/file.py:function`` as a predictor.

  The function takes float32 images [B, H, W, C] in [0, 1] and returns
  probabilities [B, K]; it may wrap any model (PyTorch, a remote API).

  Raises:
    ValueError: ``spec`` is not of that form, or names no callable.
  """
  module_name, _, function_name = spec.rpartition(":")
  if not module_name or not function_name:
    raise ValueError(
        f"--function {spec!r} must be MODULE:FUNCTION or FILE.py:FUNCTION, "
        "e.g. --function my_model:predict_proba.")
  if module_name.endswith(".py"):
    if not os.path.isfile(module_name):
      raise FileNotFoundError(f"--function {spec!r}: {module_name} does not "
                              "exist.")
    loader = importlib.util.spec_from_file_location(
        os.path.splitext(os.path.basename(module_name))[0], module_name)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
  else:
    if os.getcwd() not in sys.path:
      sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
  function = getattr(module, function_name, None)
  if not callable(function):
    raise ValueError(
        f"--function {spec!r}: {module_name} has no function "
        f"{function_name!r}; name a function images -> probabilities.")
  return function


def write_queries(path: str, images: np.ndarray) -> None:
  """Writes uint8 [N, H, W, C] queries as PATH's float32 ``images`` in
  [0, 1], the input a predictor takes."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  np.savez(path, **{QUERIES: images.astype(np.float32) / 255.0})


def from_answers(path: str, queries: np.ndarray) -> Predict:
  """A predictor that replays the answers a model gave to ``queries``.

  Args:
    path: an ``.npz`` with ``probabilities`` float [N, K], row i the
      model's answer to query i of the file ``export-queries`` wrote.
    queries: the same uint8 [N, H, W, C] queries, made again from the key.

  Returns:
    predict(images) looking each image up among the queries.

  Raises:
    ValueError: the answers do not have one row per query, or a lookup
      asks for an image that was not exported.
  """
  answers = safe_npz.read_npz(path, path)
  if ANSWERS not in answers:
    raise ValueError(
        f"{path} holds {sorted(answers)}, not {ANSWERS!r}; save the model's "
        f"answers with np.savez(path, {ANSWERS}=...).")
  scores = np.asarray(answers[ANSWERS], np.float64)
  if scores.ndim != 2 or scores.shape[0] != len(queries):
    raise ValueError(
        f"{path} has answers of shape {scores.shape}, but there are "
        f"{len(queries)} queries for this key and data; answer every image "
        "of the queries file, in order, with one row of class scores.")
  rows = {image.tobytes(): i for i, image in enumerate(queries)}

  def predict(images: np.ndarray) -> np.ndarray:
    keys = np.round(np.asarray(images) * 255.0).astype(np.uint8)
    try:
      return scores[[rows[image.tobytes()] for image in keys]]
    except KeyError:
      raise ValueError(
          "the verification needs an image that is not among the exported "
          "queries; export the queries again with the same key, --data and "
          "--source_classes as this verify command.") from None

  return predict
