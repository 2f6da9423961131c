"""What each ``jaxwm`` subcommand does, given its parsed arguments.

Each command returns the lines it prints; :mod:`jaxwm.cli` parses the
command line and turns the errors of bad input into one message.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

import jax
import numpy as np

from jaxwm import data as jaxwm_data
from jaxwm import poison
from jaxwm.cli import suspects
from jaxwm.poison.ownership import eligible_indices
from jaxwm.recipes import scenarios
from jaxwm.train import saved_model
from jaxwm.watermark import adi

MARKED_FILE, KEY_PREFIX = "marked.npz", "key"


def mark(args) -> list[str]:
  """Marks the training split of ``--data``; writes OUT/marked.npz (the
  marked training split and the clean test split, the ``npz:PATH`` layout
  of :func:`jaxwm.data.load_npz`) and the key OUT/key.*."""
  train, test = jaxwm_data.load_splits(args.data, args.data_dir)
  seed = secrets.randbits(32) if args.seed is None else args.seed
  settings = poison.PoisonedLabelConfig(
      method=args.method, poison_rate=args.poison_rate,
      target_label=args.target_label)
  marked, key = poison.mark(train, settings, jax.random.key(seed))
  os.makedirs(args.out, exist_ok=True)
  data_path = os.path.join(args.out, MARKED_FILE)
  np.savez(data_path, train_images=marked.images, train_labels=marked.labels,
           test_images=test.images, test_labels=test.labels,
           class_names=np.array(marked.class_names))
  digest = key.save(os.path.join(args.out, KEY_PREFIX))
  return [
      f"marked {key.poisoned_indices.size} of {len(marked)} {args.data} "
      f"training images with {args.method}",
      f"dataset  {data_path} (train it as npz:{data_path})",
      f"key      {os.path.join(args.out, KEY_PREFIX)}.npz/.json/"
      ".manifest.json (secret)",
      f"digest   {digest}",
      "Keep the digest apart from the key files (e.g. publish it with a "
      "time stamp); jaxwm verify asks for it."]


def _dataset_queries(key, test, source_classes) -> np.ndarray:
  """uint8 [2P, H, W, C]: the P eligible test images, then their marked
  versions: every image dataset verification may query."""
  images = test.images[eligible_indices(key, test.labels, source_classes)]
  return np.concatenate([images, key.apply_trigger_uint8(images)])


def _load_dataset_key(args):
  key = poison.WatermarkKey.load(args.key, digest=args.digest)
  _, test = jaxwm_data.load_splits(args.data, args.data_dir)
  return key, test


def _load_adi_keys(args):
  marking_key = adi.MarkingKey.load(args.key)
  verification_key = adi.VerificationKey.load(args.verification_key)
  adi.check_published(verification_key, args.digest)
  adi.check_openings(marking_key, verification_key)
  return marking_key, verification_key


def export_queries(args) -> list[str]:
  """Writes the images a verification may query, for a suspect the owner
  can only query (a remote model): ``images`` float32 [N, H, W, C]."""
  if args.kind == "dataset":
    key, test = _load_dataset_key(args)
    queries = _dataset_queries(key, test, args.source_classes)
  else:
    queries = _load_adi_keys(args)[0].triggers.images
  suspects.write_queries(args.out, queries)
  return [f"wrote {len(queries)} queries to {args.out}",
          f"answer them with np.savez(ANSWERS, {suspects.ANSWERS}="
          "predict(np.load(QUERIES)['images'])), then run jaxwm verify "
          f"{args.kind} ... --answers ANSWERS"]


def _suspect(args, queries) -> tuple[suspects.Predict, str]:
  """The suspect's predictor and how to name it."""
  if args.model:
    model = saved_model.load_model(args.model, args.model_digest)
    return model.predict_proba, f"{args.model} (saved jaxwm model)"
  if args.function:
    return suspects.from_function(args.function), f"{args.function} (function)"
  return (suspects.from_answers(args.answers, queries()),
          f"{args.answers} (answers to exported queries)")


def verify(args) -> list[str]:
  """The verdict on the suspect, as a few lines."""
  if args.kind == "dataset":
    key, test = _load_dataset_key(args)
    predict, name = _suspect(
        args, lambda: _dataset_queries(key, test, args.source_classes))
    result = poison.verify_dataset_ownership(
        predict, key, test, m=args.m, tau=args.tau, seed=args.seed,
        source_classes=args.source_classes)
    entry = scenarios.result_entry(result, args.alpha)
    rows = [("test", f"paired t-test, {key.method} key, m = {result.m} "
             f"test images, tau = {result.tau}"),
            ("Delta P", f"{result.delta_p:.4f}"),
            ("p", f"{result.p_value:.3g}")]
    meaning = "trained on the marked dataset"
  else:
    marking_key, verification_key = _load_adi_keys(args)
    predict, name = _suspect(args, lambda: marking_key.triggers.images)
    result = adi.verify(marking_key, verification_key, predict,
                        alpha=args.alpha, eps=args.eps)
    entry = {"decision": scenarios.REJECT if result.accepted_binomial
             else scenarios.RETAIN}
    rows = [("test", f"binomial test of the agreement with "
             f"{result.trials} trigger labels against chance "
             f"{result.chance:.3g}"),
            ("agreement", f"{result.matches} of {result.trials}"),
            ("p", f"{result.p_value:.3g}"),
            ("threshold", f"{_accepted(result.accepted_threshold)} (the "
             f"paper's rule: at most eps = {result.eps} disagree)")]
    meaning = "not independent of the owner's trigger set"
  decided = entry["decision"] == scenarios.REJECT
  digest = (f"checked ({args.digest[:16]}...)" if args.digest else
            f"NOT checked: {args.no_digest}")
  rows = [("suspect", name), ("key digest", digest)] + rows + [
      ("alpha", f"{args.alpha}"),
      ("decision", f"{entry['decision']}: the suspect is "
       f"{'' if decided else 'not shown to be '}{meaning}")]
  return _table(rows)


def _accepted(accepted: bool) -> str:
  return "accepted" if accepted else "not accepted"


def _table(rows: list[tuple[str, Any]]) -> list[str]:
  width = max(len(label) for label, _ in rows)
  return [f"{label:<{width}}  {value}" for label, value in rows]
