"""The docs' tables rebuilt from result JSONs.

The fixtures under ``report_fixtures/`` are results JSONs written by the
launchers' runlocal variants on digits (a few epochs; their figures are
small-model figures, not results). The expected cells are read from the
JSONs themselves.
"""

from __future__ import annotations

import json
import math
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from jaxwm.defenses import neural_cleanse
from jaxwm.recipes import report
from jaxwm.recipes import report_experiments
from jaxwm.recipes import report_tables

FIXTURES = pathlib.Path(__file__).parent / "report_fixtures"
REPO = pathlib.Path(__file__).resolve().parents[2]


def _page(*groups: str) -> str:
  return "".join(f"# {group}\n\n<!-- table:{group} -->\ntyped\n"
                 "<!-- /table -->\n\ntext after\n" for group in groups)


def _rows(markdown: str) -> dict[str, list[str]]:
  """{first cell: cells} of every table row (later tables win)."""
  rows = {}
  for line in markdown.splitlines():
    if line.startswith("| ") and not line.startswith("| run "):
      cells = [cell.strip() for cell in line.strip("|").split(" | ")]
      rows[cells[0]] = cells
  return rows


def _block(text: str, group: str) -> str:
  return text.split(f"<!-- table:{group} -->")[1].split("<!-- /table -->")[0]


def _load(group: str, name: str) -> dict:
  return json.loads((FIXTURES / group / f"{name}.json").read_text())


def test_dataset_watermark_rows_show_the_papers_and_all_class_figures():
  result = report.regenerate(_page("ubw_p"), str(FIXTURES))
  assert result.generated == ("ubw_p",) and result.changed
  block = _block(result.text, "ubw_p")
  assert "(2 JSONs)" in block
  assert "class 0 (its source class" in block
  assert "the paper's Independent-T" in block
  assert "floored at the exact sign test's 2^-m" in block
  paper, every, statistics = block.split("\n\n| run ")[1:]
  for name in ("ubw_p_s0", "ubw_p_s1"):
    metrics = _load("ubw_p", name)["metrics"]
    cells = _rows("| run " + paper)[f"`{name}`"]
    assert cells[1:4] == ["ubw_p", "independent", str(
        _load("ubw_p", name)["seed"])]
    assert cells[5] == f"{metrics['benign_accuracy']:.4f}"
    assert cells[6] == f"{metrics['asr_a']:.3f}"
    assert cells[8] == f"{metrics['d_p']:.3f}"
    assert cells[10] == report_tables.p_value(
        metrics["p_value"]["malicious"])
    all_cells = _rows("| run " + every)[f"`{name}`"]
    assert all_cells[4] == f"{metrics['all_classes']['asr_a']:.3f}"
    assert all_cells[8] == report_tables.p_value(
        metrics["all_classes"]["p_value"]["malicious"])
    entry = metrics["verification"]["malicious"]
    assert _rows("| run " + statistics)[f"`{name}`"][1] == (
        f"{entry['statistic']:.1f} / {entry['dof']} / "
        f"{entry['log10_p_value']:.1f}")
  # The two seeds of one setting: mean and 95% t interval, decisions
  # counted.
  summary = _rows("| run " + paper)["mean ± 95% CI of `ubw_p_s0`, `ubw_p_s1`"]
  values = [_load("ubw_p", n)["metrics"]["benign_accuracy"]
            for n in ("ubw_p_s0", "ubw_p_s1")]
  half = stats.t.ppf(0.975, 1) * np.std(values, ddof=1) / math.sqrt(2)
  assert summary[5] == f"{np.mean(values):.4f} ± {half:.4f}"
  rejected = sum(_load("ubw_p", n)["metrics"]["p_value"]["malicious"] < 0.01
                 for n in ("ubw_p_s0", "ubw_p_s1"))
  assert summary[10] == f"{rejected} of 2 < 0.01"
  assert "text after" in result.text and "typed" not in block


def test_runs_before_the_papers_definitions_are_labelled(tmp_path):
  old = _load("ubw_p", "ubw_p_s0")
  for name in ("source_classes", "all_classes"):
    del old["metrics"][name]
  for entry in old["metrics"]["verification"].values():
    del entry["p_value_definition"]
  (tmp_path / "old").mkdir()
  (tmp_path / "old" / "old_s0.json").write_text(json.dumps(old))
  block = _block(report.regenerate(_page("old"), str(tmp_path)).text, "old")
  assert "Runs from before the paper's definitions" in block
  assert "p indep.-trigger model" in block
  assert "p other-trigger model (then independent_t)" in block
  assert "before the 2^-m floor" in block
  assert "t statistic / degrees of freedom" not in block


def test_the_committed_sleeper_agent_jsons_still_render():
  text = report.regenerate(_page("sleeper_agent_eps24"),
                           str(REPO / "docs" / "runs")).text
  block = _block(text, "sleeper_agent_eps24")
  assert "(10 JSONs)" in block and "before the 2^-m floor" in block
  rows = _rows(block)
  for name in ("e24_s4", "e24_s0_v40", "e24_pair01_s0"):
    data = json.loads((REPO / "docs" / "runs" / "sleeper_agent_eps24" /
                       f"{name}.json").read_text())
    cells = rows[f"`{name}`"]
    assert cells[1] == "sleeper_agent"
    assert cells[3] == str(data["config"]["victim"]["num_epochs"] or
                           data["config"]["train"]["num_epochs"])
    assert cells[4] == (f"{data['config']['watermark']['source_class']} → "
                        f"{data['config']['watermark']['target_label']}")
    assert cells[9] == f"{data['metrics']['asr_a']:.3f}"
    assert cells[13] == report_tables.p_value(
        data["metrics"]["p_value"]["malicious"])
  assert any(key.startswith("mean ± 95% CI of `e24_s0`, `e24_s1`")
             for key in rows)


def test_crafted_watermark_rows_carry_their_statistics():
  block = _block(report.regenerate(_page("ubw_c"), str(FIXTURES)).text,
                 "ubw_c")
  data = _load("ubw_c", "ubw_c_s0")
  rows = _rows(block.split("t statistic")[0])
  cells = rows["`ubw_c_s0`"]
  assert cells[4] == "0 → 1"
  assert cells[9] == report_tables.fixed(3)(data["metrics"]["asr_a"])
  assert "floored at the exact sign test's 2^-m" in block
  assert "t statistic / degrees of freedom / log10 p" in block


def test_model_watermark_tables_give_both_rules_and_the_budget():
  block = _block(report.regenerate(_page("model_watermark"),
                                   str(FIXTURES)).text, "model_watermark")
  data = _load("model_watermark", "adi_fromscratch")
  metrics = data["metrics"]
  budget = metrics["attack_budget"]
  lines = [line for line in block.splitlines()
           if line.startswith("| `adi_fromscratch` | FROMSCRATCH | FTAL |")]
  assert len(lines) == 1
  cells = [cell.strip() for cell in lines[0].strip("|").split(" | ")]
  assert cells[3] == (
      f"{budget['attacker_images']:,} images × {budget['attacker_epochs']} "
      f"epochs = {budget['attacker_steps']:,} steps (owner: "
      f"{budget['owner_images']:,} × {budget['owner_epochs']} = "
      f"{budget['owner_steps']:,})")
  ftal = metrics["removal"]["ftal"]
  assert cells[4:] == [
      f"{ftal['test_accuracy']:.4f}", f"{ftal['watermark_accuracy']:.3f}",
      report_tables.p_value(ftal["p_value"]), f"{ftal['log10_p_value']:.1f}",
      report_tables.yes_no(ftal["accepted_binomial"]),
      report_tables.yes_no(ftal["accepted_threshold"])]
  assert f"alpha = {metrics['alpha']}" in block
  assert f"eps = {metrics['eps']}" in block
  assert "| `adi_pretrained` | PRETRAINED |" in block
  assert "| `adi_fromscratch` | pirated | pirate |" in block
  assert "transferred to digits (RTAL)" in block


def _cells(line: str) -> list[str]:
  return [cell.strip() for cell in line.strip("|").split(" | ")]


def test_removal_tables_give_every_cell_and_the_detectors():
  block = _block(report.regenerate(_page("removal"), str(FIXTURES)).text,
                 "removal")
  for name in ("content", "badnets"):
    metrics = _load("removal", name)["metrics"]
    matrix, detectors = [_cells(line) for line in block.splitlines()
                         if line.startswith(f"| `{name}` | {name} | 0 |")]
    header = next(_cells(line) for line in block.splitlines()
                  if line.startswith("| run | watermark | seed | none"))
    for column, cell in metrics["cells"].items():
      verification = cell["verification"]  # or {"error": why}
      verified = verification.get("decision") == "reject_h0"
      assert matrix[header.index(column)] == (
          f"{cell['watermark_success']:.3f} / {cell['benign_accuracy']:.3f} "
          f"/ {report_tables.p_value(verification.get('p_value'))}"
          f"{' (V)' if verified else ''}")
    found = metrics["detectors"]
    cleanse = found["neural_cleanse"]
    assert detectors[3] == (
        f"{neural_cleanse.largest_small_index(cleanse['l1_norms']):.2f} / "
        f"{cleanse['max_anomaly_index']:.2f}")
    if found["strip"] is None:  # a trigger-set watermark: Neural Cleanse
      assert detectors[5:] == ["n/a"] * 4
    else:
      assert detectors[5].endswith(f"{found['strip']['auroc']:.3f}")
      assert detectors[7].endswith(
          f"{found['spectral_signatures']['auroc']:.3f}")
  # The matrix's columns: every column any run measured, none first.
  assert "| run | watermark | seed | none | fine_tuning_fc |" in block


def test_an_ablation_shows_the_settings_it_varies_and_each_model_once(
    tmp_path):
  ablation = tmp_path / "removal"
  ablation.mkdir()
  for weight in (0.1, 10.0):
    run = _load("removal", "content")
    run["config"]["defenses"]["wild_js"]["settings"]["weight"] = weight
    (ablation / f"content_lambda{weight}.json").write_text(json.dumps(run))
  block = _block(report.regenerate(_page("removal"), str(tmp_path)).text,
                 "removal")
  assert "| run | watermark | seed | wild_js weight | none |" in block
  assert "| `content_lambda0.1` | content | 0 | 0.1 | " in block
  assert "| `content_lambda10.0` | content | 0 | 10.0 | " in block
  # Both runs repaired one watermarked model: its detectors once.
  detectors = block.split("Detectors on the watermarked model")[1]
  assert detectors.count("| `content_lambda") == 1
  # Settings that no run varies get no column.
  main = _block(report.regenerate(_page("removal"), str(FIXTURES)).text,
                "removal")
  assert "weight" not in main.split("Detectors")[0]


def test_a_run_without_detectors_leaves_them_to_another_of_its_model(
    tmp_path):
  runs = tmp_path / "removal"
  runs.mkdir()
  repairs_only = _load("removal", "content")
  del repairs_only["metrics"]["detectors"]
  repairs_only["config"]["removal"]["detectors"] = False
  (runs / "content_a_repairs.json").write_text(json.dumps(repairs_only))
  (runs / "content_b_full.json").write_text(
      json.dumps(_load("removal", "content")))
  block = _block(report.regenerate(_page("removal"), str(tmp_path)).text,
                 "removal")
  matrix, detectors = block.split("Detectors on the watermarked model")
  assert "| `content_a_repairs` | content | 0 |" in matrix
  assert "content_a_repairs" not in detectors
  assert detectors.count("| `content_b_full` | content | 0 |") == 1
  # Runs that all left the detectors out get the matrix alone.
  (runs / "content_b_full.json").unlink()
  block = _block(report.regenerate(_page("removal"), str(tmp_path)).text,
                 "removal")
  assert "| `content_a_repairs` | content | 0 |" in block
  assert "Detectors on the watermarked model" not in block


def test_a_run_older_than_a_setting_shows_the_setting_s_default(tmp_path):
  ablation = tmp_path / "removal"
  ablation.mkdir()
  older = _load("removal", "content")
  settings = older["config"]["defenses"]["wild_js"]["settings"]
  settings.pop("schedule", None)  # as a run from before the setting
  (ablation / "content_older.json").write_text(json.dumps(older))
  newer = _load("removal", "content")
  newer["config"]["defenses"]["wild_js"]["settings"]["schedule"] = "cosine"
  (ablation / "content_cosine.json").write_text(json.dumps(newer))
  block = _block(report.regenerate(_page("removal"), str(tmp_path)).text,
                 "removal")
  assert "| run | watermark | seed | wild_js schedule | none |" in block
  assert "| `content_older` | content | 0 | constant | " in block
  assert "| `content_cosine` | content | 0 | cosine | " in block


def test_model_stealing_tables_give_every_suspects_verdict():
  block = _block(report.regenerate(_page("model_stealing"),
                                   str(FIXTURES)).text, "model_stealing")
  metrics = _load("model_stealing", "move_whitebox")["metrics"]
  suspects = {**metrics["attacks"], "independent": metrics["independent"]}
  rows = {cells[1]: cells for cells in (
      [cell.strip() for cell in line.strip("|").split(" | ")]
      for line in block.splitlines()
      if line.startswith("| `move_whitebox` | ") and "white_box" not in line)}
  assert set(rows) == {name.replace("_", " ") for name in suspects}
  for name, entry in suspects.items():
    assert rows[name.replace("_", " ")][2:] == [
        f"{entry['test_accuracy']:.4f}", f"{entry['agreement']:.3f}",
        str(entry["queries"]), f"{entry['statistic']:.2f}",
        report_tables.p_value(entry["p_value"]), f"{entry['delta_p']:.3f}",
        entry["decision"]]
    verdict = int(entry["decision"] == "reject_h0")
    assert (f"| {name.replace('_', ' ')} | {verdict}/1: "
            f"{report_tables.p_value(entry['p_value'])} |") in block
  assert (f"| `move_whitebox` | move_whitebox | white_box | 0 | "
          f"{metrics['victim_accuracy']:.4f} |") in block


def test_model_stealing_verdicts_are_pooled_over_seeds_per_method(
    tmp_path):
  """Two seeds of one method and one of another: each method's column
  counts its seeds' rejections and lists their p-values in seed order."""
  original = _load("model_stealing", "move_whitebox")
  runs = tmp_path / "model_stealing"
  runs.mkdir()
  for name, method, seed, p in (("a", "move_whitebox", 1, 0.5),
                                ("b", "move_whitebox", 0, 1e-4),
                                ("c", "badnets", 0, 0.002)):
    data = json.loads(json.dumps(original))
    data["seed"], data["config"]["method"] = seed, method
    copy = data["metrics"]["attacks"]["direct_copy"]
    copy["p_value"] = p
    copy["decision"] = "reject_h0" if p < 0.01 else "fail_to_reject"
    data["metrics"]["method"]["controls"] = {
        "unseen_victim_like": {"p_value": p / 10},
        "unseen_benign": {"p_value": 1 - p}}
    (runs / f"{name}.json").write_text(json.dumps(data))
  block = _block(report.regenerate(_page("model_stealing"),
                                   str(tmp_path)).text, "model_stealing")
  assert "| suspect | `move_whitebox` | `badnets` |" in block
  assert "| direct copy | 1/2: 1.0e-04, 0.5 | 1/1: 2.0e-03 |" in block
  # Each owner's row ends with its controls' p-values.
  assert "| 0.05 | 0.5 |\n" in block and "| 2.0e-04 | 1 |\n" in block


def test_a_group_without_jsons_is_kept_and_marked_pending(tmp_path):
  first = report.regenerate(_page("none"), str(tmp_path))
  assert first.pending == ("none",) and first.changed
  block = _block(first.text, "none")
  assert block.startswith(f"\n{report.PENDING} (`docs/runs/none/`)._")
  assert block.rstrip().endswith("typed")
  again = report.regenerate(first.text, str(tmp_path))
  assert not again.changed and again.text == first.text


def test_generated_tables_are_rebuilt_identically():
  first = report.regenerate(_page("ubw_p", "model_watermark"), str(FIXTURES))
  assert not report.regenerate(first.text, str(FIXTURES)).changed


def test_bad_markers_and_folders_are_refused(tmp_path):
  with pytest.raises(report.ReportError, match="not all end with"):
    report.regenerate("<!-- table:ubw_p -->\nno end\n", str(FIXTURES))
  mixed = tmp_path / "mixed"
  mixed.mkdir()
  for group, name in (("ubw_p", "ubw_p_s0"), ("ubw_c", "ubw_c_s0")):
    shutil.copy(FIXTURES / group / f"{name}.json", mixed)
  with pytest.raises(report.ReportError, match="keep one experiment"):
    report.regenerate(_page("mixed"), str(tmp_path))
  (tmp_path / "bad").mkdir()
  (tmp_path / "bad" / "x.json").write_text("{\"experiment\": \"train\"}")
  with pytest.raises(report.ReportError, match="lacks"):
    report.regenerate(_page("bad"), str(tmp_path))
  assert set(report_experiments.BUILDERS) == {
      "dataset_watermark", "craft_poison", "model_watermark", "removal",
      "model_stealing"}


def test_the_docs_match_their_committed_jsons():
  done = subprocess.run(
      [sys.executable, "-m", "experiments.report", "--check"], cwd=REPO,
      capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == 0, done.stdout + done.stderr
  outcome = dict(line.split(": ", 1) for line in done.stdout.splitlines())
  generated = outcome["docs/poisons.md"].split(";")[0].removeprefix(
      "regenerated ").split(", ")
  assert "sleeper_agent_eps24" in generated
  # Every table of these two pages comes from committed JSONs.
  for page in ("docs/results.md", "docs/poisons.md"):
    assert outcome[page].endswith("pending nothing"), outcome[page]
