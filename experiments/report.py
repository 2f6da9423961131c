r"""Regenerates the tables of the docs from the committed result JSONs.

  python -m experiments.report            # rewrites the marked tables
  python -m experiments.report --check    # exit 1 if a table is stale

Every table of ``docs/results.md``, ``docs/poisons.md``,
``docs/defenses.md`` and ``docs/move.md`` between ``<!-- table:GROUP -->``
and ``<!-- /table -->`` is rebuilt from the JSONs in ``docs/runs/GROUP/``; a
group without JSONs is kept as typed and marked pending (see
:mod:`jaxwm.recipes.report`). Run from the repository root.
"""

import sys

from absl import app
from absl import flags

from jaxwm.recipes import report

_RUNS = flags.DEFINE_string("runs", "docs/runs",
                            "Folder of the JSON groups, one folder each.")
_DOCS = flags.DEFINE_list("docs", ["docs/results.md", "docs/poisons.md",
                                    "docs/defenses.md", "docs/move.md"],
                          "The Markdown pages to regenerate.")
_CHECK = flags.DEFINE_bool("check", False,
                           "Write nothing; exit 1 if a page would change.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  outcome = report.regenerate_files(_DOCS.value, _RUNS.value,
                                    write=not _CHECK.value)
  for path, result in outcome.items():
    print(f"{path}: regenerated {', '.join(result.generated) or 'nothing'}; "
          f"pending {', '.join(result.pending) or 'nothing'}"
          f"{'; changed' if result.changed else ''}")
  stale = [path for path, result in outcome.items() if result.changed]
  if _CHECK.value and stale:
    print(f"stale: {', '.join(stale)}; run python -m experiments.report")
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
