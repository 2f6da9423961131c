"""The ``jaxwm`` command: a data owner's tasks that are not experiments.

  jaxwm mark --data=digits --out=OWNER_DIR
  jaxwm export-queries dataset --key=OWNER_DIR/key --digest=HEX \\
      --data=digits --out=queries.npz
  jaxwm verify dataset --key=OWNER_DIR/key --digest=HEX --data=digits \\
      (--model=SAVED_MODEL | --function=MODULE:FUNCTION | --answers=FILE)
  jaxwm verify adi --key=MK --verification_key=VK --digest=HEX --model=...

Training a suspect is an experiment: ``python -m experiments.train`` (from
a clone) trains on the marked ``npz:OWNER_DIR/marked.npz`` and saves the
model that ``--model`` loads (:func:`jaxwm.train.recipe.load_model`).
Bad input ends with ``jaxwm: error: ...`` naming the value and the fix,
and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from jaxwm.cli import commands
from jaxwm.data.loaders import VALID_NAMES
from jaxwm.poison.poisoned_label import METHODS
from jaxwm.verify.levels import DEFAULT_ALPHA
from jaxwm.watermark.adi import DEFAULT_EPS

_KINDS = ("dataset", "adi")


def _add_data(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--data", required=True,
                      help=f"dataset loader name: {', '.join(VALID_NAMES)}.")
  parser.add_argument("--data_dir", default=None,
                      help="data directory of fashion_mnist or tfds:NAME.")


def _add_key(parser: argparse.ArgumentParser, kind: str) -> None:
  """The key files and the digest that pins them."""
  if kind == "dataset":
    parser.add_argument("--key", required=True,
                        help="the key's prefix, as jaxwm mark wrote it.")
    _add_data(parser)
    parser.add_argument(
        "--source_classes", type=int, nargs="+", default=None,
        help="query test images of these classes only (default: every "
        "class the watermark acts on).")
    digest_help = "the digest jaxwm mark printed (key.save returned)."
  else:
    parser.add_argument("--key", required=True,
                        help="the marking key's prefix (secret).")
    parser.add_argument("--verification_key", required=True,
                        help="the verification key's prefix (published).")
    digest_help = "the published VerificationKey.digest()."
  pinned = parser.add_mutually_exclusive_group(required=True)
  pinned.add_argument("--digest", help=digest_help)
  pinned.add_argument(
      "--no_digest", metavar="REASON",
      help="verify without checking the digest, and say why (printed with "
      "the verdict); a forged key then goes undetected.")


def _add_suspect(parser: argparse.ArgumentParser) -> None:
  suspect = parser.add_mutually_exclusive_group(required=True)
  suspect.add_argument("--model", help="a saved jaxwm model: a training "
                       "--workdir or an exported PREFIX.")
  suspect.add_argument("--function", help="MODULE:FUNCTION or "
                       "FILE.py:FUNCTION, float images [B, H, W, C] in "
                       "[0, 1] -> probabilities [B, K] (any framework).")
  suspect.add_argument("--answers", help="an .npz of the suspect's "
                       "'probabilities' [N, K] for the images jaxwm "
                       "export-queries wrote, in order.")
  parser.add_argument("--model_digest", default=None,
                      help="with --model PREFIX: the digest export_model "
                      "returned.")


def _probability(text: str) -> float:
  value = float(text)
  if not 0.0 < value < 1.0:
    raise argparse.ArgumentTypeError(f"{text} is not in (0, 1); e.g. 0.01.")
  return value


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="jaxwm", description="Mark a dataset; verify a suspect model.")
  sub = parser.add_subparsers(dest="command", required=True)
  mark = sub.add_parser("mark", help="watermark a dataset's training split.")
  _add_data(mark)
  mark.add_argument("--out", required=True, help="output folder.")
  mark.add_argument("--method", default="ubw_p", choices=METHODS)
  mark.add_argument("--poison_rate", type=_probability, default=0.1)
  mark.add_argument("--target_label", type=int, default=0,
                    help="the target class of a targeted method.")
  mark.add_argument("--seed", type=int, default=None,
                    help="only for tests: anyone who knows it can "
                    "redraw the key (default: drawn with secrets).")
  mark.set_defaults(run=commands.mark)
  queries = sub.add_parser("export-queries", help="write the images a "
                           "verification may query, for a remote suspect.")
  verify = sub.add_parser("verify", help="the verdict on a suspect.")
  for command, run in ((queries, commands.export_queries),
                       (verify, commands.verify)):
    kinds = command.add_subparsers(dest="kind", required=True)
    for kind in _KINDS:
      kind_parser = kinds.add_parser(kind)
      _add_key(kind_parser, kind)
      kind_parser.set_defaults(run=run)
      if command is queries:
        kind_parser.add_argument("--out", required=True,
                                 help="the queries .npz to write.")
        continue
      _add_suspect(kind_parser)
      kind_parser.add_argument("--alpha", type=_probability,
                               default=DEFAULT_ALPHA)
      if kind == "dataset":
        kind_parser.add_argument("--m", type=int, default=100)
        kind_parser.add_argument("--tau", type=float, default=0.25)
        kind_parser.add_argument("--seed", type=int, default=0,
                                 help="seeds the choice of test images.")
      else:
        kind_parser.add_argument("--eps", type=float, default=DEFAULT_EPS)
  return parser


def main(argv: list[str] | None = None) -> None:
  """Runs ``jaxwm ARGS``; exits 2 with one message on bad input."""
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    lines = args.run(args)
  except (ValueError, TypeError, OSError, ImportError) as error:
    parser.exit(2, f"jaxwm: error: {error}\n")
  sys.stdout.write("\n".join(lines) + "\n")
