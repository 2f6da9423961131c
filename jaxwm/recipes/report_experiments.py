"""The Markdown of each experiment's result JSONs (see
:mod:`jaxwm.recipes.report_tables` for the machinery and the definitions
of pre-change JSONs).

:data:`BUILDERS` maps a results JSON's ``experiment`` to its builder:
``dataset_watermark`` (UBW-P and the baselines), ``craft_poison``
(UBW-C and Sleeper Agent; availability poisons), ``model_watermark``
(Adi et al.: marking, removal, piracy and transfer), ``model_stealing``
(MOVE and the baselines against model stealing) and ``removal`` (the
watermark x defense matrix and the detectors,
:mod:`jaxwm.recipes.report_removal`).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from jaxwm.recipes import report_removal
from jaxwm.recipes import scenarios
from jaxwm.recipes.report_tables import (
    Column, RUN, Run, SEED, alpha_of, fixed, lookup, markdown_table, metric,
    p_value, p_value_definition, setting, table, yes_no)
from jaxwm.verify.levels import INCONCLUSIVE, REJECT

RATE = fixed(3)
STATISTIC = fixed(2)
ACCURACY = fixed(4)
SCENARIO_NAMES = scenarios.SCENARIOS + scenarios.EXTRA_SCENARIOS
SCENARIO_HEADERS = {"malicious": "malicious", "independent_t": "indep. T",
                    "independent_m": "indep. M",
                    "independent_trigger_model": "indep.-trigger model"}


def _scenarios_of(runs: Sequence[Run], within: str = "") -> list[str]:
  """The scenarios any run verified, malicious first."""
  found = set()
  for run in runs:
    found |= set(lookup(run.metrics, f"{within}.p_value" if within
                        else "p_value", {}))
  order = ("malicious",) + tuple(n for n in SCENARIO_NAMES
                                 if n != "malicious")
  return [name for name in order if name in found]


def _verification_columns(names: Sequence[str], within: str = "",
                          headers: Mapping[str, str] = SCENARIO_HEADERS
                          ) -> list[Column]:
  """p and Delta P of each scenario in ``names``."""
  prefix = f"{within}." if within else ""
  return ([metric(f"p {headers[name]}", f"{prefix}p_value.{name}", p_value,
                  "rejections") for name in names] +
          [metric(f"ΔP {headers[name]}", f"{prefix}delta_p.{name}", RATE)
           for name in names])


def _statistics(entry: Any) -> str:
  """``t / dof / log10 p`` of a verification entry."""
  if not isinstance(entry, Mapping) or "p_value" not in entry:
    return "n/a"
  t = entry.get("statistic")
  t = "—" if t is None else f"{t:.1f}"
  return f"{t} / {entry.get('dof', 'n/a')} / {entry['log10_p_value']:.1f}"


def _statistics_table(runs: Sequence[Run], names: Sequence[str],
                      within: str = "") -> str:
  prefix = f"{within}." if within else ""
  columns = [RUN] + [
      Column(SCENARIO_HEADERS[name],
             lambda run, name=name: lookup(
                 run.metrics, f"{prefix}verification.{name}"), _statistics)
      for name in names]
  return ("t statistic / degrees of freedom / log10 p of each scenario "
          "(— : every difference exceeded tau with no spread, the exact "
          "sign test's p):\n\n" + table(columns, runs, summarise=False))


# Benign accuracy without and with the watermark, ASR-A, ASR-C and D_p.
_WATERMARK_COLUMNS = [
    metric("BA no watermark", "benign_accuracy_no_watermark", ACCURACY),
    metric("BA", "benign_accuracy", ACCURACY),
    metric("ASR-A", "asr_a", RATE), metric("ASR-C", "asr_c", RATE),
    metric("D_p", "d_p", RATE)]


def dataset_watermark(runs: Sequence[Run]) -> str:
  """UBW-P and the baselines: the paper's evaluation (source classes),
  every class, and the verification statistics."""
  new = [run for run in runs if "source_classes" in run.metrics]
  old = [run for run in runs if "source_classes" not in run.metrics]
  alpha = alpha_of(runs)
  head = [RUN, setting("method", "watermark.method"),
          setting("labels", "watermark.label_draw",
                  lambda draw: draw or "—"), SEED]
  parts = []
  if new:
    classes = sorted({c for run in new for c in run.metrics["source_classes"]})
    names = _scenarios_of(new)
    parts += [
        "The UBW paper's evaluation: ASR-A, ASR-C and D_p on, and the "
        "verification images sampled from, the triggered test images of "
        f"class{'es' if len(classes) > 1 else ''} "
        f"{', '.join(map(str, classes))} (its source class, "
        "Appendix C.2). indep. T: the watermarked model queried with a "
        "different trigger (the paper's Independent-T, Section 5.3); "
        "indep. M: the benign model, queried with the owner's trigger; "
        "indep.-trigger model: a model trained on the dataset watermarked "
        "with the different trigger, queried with the owner's (not one of "
        "the paper's scenarios). p: "
        f"{p_value_definition(new, [f'verification.{n}' for n in names])}; "
        f"decisions at alpha = {alpha:g}. BA: benign accuracy on the whole "
        "test set.",
        table(head + _WATERMARK_COLUMNS + [
            metric("top-class share", "top_class_share", RATE),
        ] + _verification_columns(names), new, alpha),
        "The same runs on every class the watermark acts on (all classes "
        "but a targeted watermark's target): not the paper's quantity.",
        table(head + [
            metric("ASR-A", "asr_a", RATE, within="all_classes"),
            metric("ASR-C", "asr_c", RATE, within="all_classes"),
            metric("D_p", "d_p", RATE, within="all_classes"),
            metric("top-class share", "top_class_share", RATE,
                   within="all_classes"),
        ] + _verification_columns(_scenarios_of(new, "all_classes"),
                                  "all_classes"), new, alpha),
        _statistics_table(new, names),
    ]
  if old:
    headers = {**SCENARIO_HEADERS,
               "independent_t": "other-trigger model (then independent_t)"}
    parts += [
        "Runs from before the paper's definitions: ASR-A, ASR-C, D_p and "
        "verification on every class the watermark acts on; their "
        "independent_t was a model trained with a different trigger and "
        "queried with the owner's (today's independent_trigger_model), not "
        "the paper's Independent-T. p: "
        f"{p_value_definition(old, ['verification.malicious'])}.",
        table(head + _WATERMARK_COLUMNS +
              _verification_columns(_scenarios_of(old), headers=headers),
              old, alpha),
    ]
  return "\n\n".join(parts)


def _victim_epochs(run: Run) -> Any:
  epochs = lookup(run.config, "victim.num_epochs")
  return lookup(run.config, "train.num_epochs") if epochs is None else epochs


def _pair(run: Run) -> str:
  return (f"{lookup(run.config, 'watermark.source_class')} → "
          f"{lookup(run.config, 'watermark.target_label')}")


CRAFT_HEAD = [RUN, setting("method", "method"),
              setting("eps (/255)", "poison.epsilon"),
              Column("victim epochs", _victim_epochs)]


def _crafted_watermarks(runs: Sequence[Run]) -> str:
  names = _scenarios_of(runs)
  alpha = alpha_of(runs)
  columns = CRAFT_HEAD + [
      Column("source → target", _pair), SEED,
      metric("objective", "crafting_objective", RATE),
      metric("BA", "benign_accuracy", ACCURACY),
      metric("BA clean model", "benign_accuracy_clean_model", ACCURACY),
      metric("ASR-A", "asr_a", RATE),
      metric("ASR-A clean model", "asr_a_clean_model", RATE),
      metric("ASR-C", "asr_c", RATE), metric("D_p", "d_p", RATE),
  ] + _verification_columns(names)
  parts = [
      "ASR-A, ASR-C, D_p and verification on the triggered test images of "
      "the watermark's source class (the UBW paper's evaluation); indep. "
      "T: the poisoned victim queried with a different trigger (the "
      "paper's Independent-T); indep. M: the clean victim. p: "
      f"{p_value_definition(runs, [f'verification.{n}' for n in names])}; "
      f"decisions at alpha = {alpha:g}.",
      table(columns, runs, alpha)]
  recorded = [run for run in runs
              if "p_value_definition" in lookup(
                  run.metrics, "verification.malicious", {})]
  if recorded:
    parts.append(_statistics_table(recorded, names))
  return "\n\n".join(parts)


def _availability(runs: Sequence[Run]) -> str:
  def drop(run: Run) -> Any:
    poisoned = lookup(run.metrics, "test_accuracy")
    clean = lookup(run.metrics, "clean_test_accuracy")
    if isinstance(poisoned, float) and isinstance(clean, float):
      return 100 * (clean - poisoned)
    return None

  columns = CRAFT_HEAD + [
      setting("steps", "poison.steps"), setting("restarts", "poison.restarts"),
      SEED,
      metric("poisoned victim", "test_accuracy", ACCURACY),
      metric("clean victim", "clean_test_accuracy", ACCURACY),
      Column("drop (points)", drop, fixed(1), "mean"),
      metric("objective", "crafting_objective", RATE)]
  return ("Test accuracy of a victim trained from scratch on the poisoned "
          "set and of one trained on the clean set, with the same recipe.\n\n"
          + table(columns, runs))


def craft_poison(runs: Sequence[Run]) -> str:
  """Clean-label watermarks (UBW-C, Sleeper Agent) and availability
  poisons, a table each."""
  watermarks = [run for run in runs if "asr_a" in run.metrics]
  poisons = [run for run in runs if "asr_a" not in run.metrics]
  parts = []
  if watermarks:
    parts.append(_crafted_watermarks(watermarks))
  if poisons:
    parts.append(_availability(poisons))
  return "\n\n".join(parts)


def _verdict_cells(verdict: Any) -> list[str]:
  """watermark accuracy, p, log10 p and the two decisions of a verdict."""
  verdict = verdict if isinstance(verdict, Mapping) else {}
  log10 = verdict.get("log10_p_value")
  return [RATE(verdict.get("watermark_accuracy")),
          p_value(verdict.get("p_value")),
          "n/a" if log10 is None else f"{log10:.1f}",
          yes_no(verdict.get("accepted_binomial")),
          yes_no(verdict.get("accepted_threshold"))]


def _budget(run: Run) -> str:
  budget = run.metrics.get("attack_budget")
  if not isinstance(budget, Mapping):
    held_out = lookup(run.config, "attack.held_out_fraction")
    return f"held-out fraction {held_out} (counts not recorded)"
  return (f"{budget['attacker_images']:,} images × "
          f"{budget['attacker_epochs']} epochs = "
          f"{budget['attacker_steps']:,} steps (owner: "
          f"{budget['owner_images']:,} × {budget['owner_epochs']} = "
          f"{budget['owner_steps']:,})")


VERDICT_HEADER = ["watermark accuracy", "p", "log10 p", "binomial accepts",
                  "paper's rule accepts"]


def model_watermark(runs: Sequence[Run]) -> str:
  """Adi et al.: marking, removal attacks, piracy and transfer."""
  alpha = lookup(runs[0].metrics, "alpha", "n/a")
  eps = lookup(runs[0].metrics, "eps", "n/a")
  marking, removal, piracy = [], [], []
  for run in runs:
    mode = str(lookup(run.config, "watermark.mode", "")).upper()
    marking.append([f"`{run.name}`", "non-marked", ACCURACY(
        run.metrics.get("benign_accuracy_unmarked"))] +
                   _verdict_cells(run.metrics.get("unmarked")))
    marking.append([f"`{run.name}`", mode, ACCURACY(
        run.metrics.get("benign_accuracy"))] + _verdict_cells(run.metrics))
    attacks = run.metrics.get("removal", {})
    for attack in _in_config_order(run, "attack.names", attacks):
      entry = attacks[attack]
      removal.append([f"`{run.name}`", mode, attack.upper(), _budget(run),
                      ACCURACY(entry.get("test_accuracy"))] +
                     _verdict_cells(entry))
    piracy += _piracy_rows(run)
  parts = [
      "Verify decides by two rules: the exact one-sided binomial test of "
      f"the agreement against chance at alpha = {alpha} (jaxwm's rule: "
      "the model is not independent of the trigger set) and the paper's "
      f"threshold rule at eps = {eps} (at most eps |T| triggers disagree: "
      "the watermark is intact). p is the binomial test's.",
      markdown_table(["run", "model", "test accuracy"] + VERDICT_HEADER,
                     marking)]
  if removal:
    parts += [
        "Removal attacks (Section 4.4) on the marked model, at the last "
        "learning rate of training, with the attacker's budget shown.",
        markdown_table(["run", "model", "attack", "attacker's budget",
                        "test accuracy"] + VERDICT_HEADER, removal)]
  if piracy:
    parts += [
        "Ownership piracy (the attacker embeds its own trigger set) and "
        "transfer learning (verified with the original head).",
        markdown_table(["run", "model", "key", "test accuracy"] +
                       VERDICT_HEADER, piracy)]
  return "\n\n".join(parts)


def _in_config_order(run: Run, path: str,
                     measured: Mapping[str, Any]) -> list[str]:
  """The attacks of ``measured`` in the order the config lists them (the
  JSON's keys are sorted)."""
  listed = [name for name in lookup(run.config, path, ()) if name in measured]
  return listed + sorted(set(measured) - set(listed))


def _piracy_rows(run: Run) -> list[list[str]]:
  rows = []
  piracy = run.metrics.get("piracy")
  name = f"`{run.name}`"
  if isinstance(piracy, Mapping):
    accuracy = ACCURACY(piracy.get("test_accuracy"))
    for party in ("owner", "pirate"):
      rows.append([name, "pirated", party, accuracy] +
                  _verdict_cells(piracy.get(party)))
    rows.append([name, "released (before piracy)", "pirate", ""] +
                _verdict_cells(piracy.get("pirate_on_released_model")))
    after = piracy.get("after", {})
    for attack in _in_config_order(run, "piracy.attacks", after):
      entry = after[attack]
      for party in ("owner", "pirate"):
        rows.append([name, f"pirated, then {attack.upper()}", party,
                     ACCURACY(entry.get("test_accuracy"))] +
                    _verdict_cells(entry.get(party)))
  transfer = run.metrics.get("transfer")
  if isinstance(transfer, Mapping):
    rows.append([name, f"transferred to {transfer.get('dataset')} (RTAL)",
                 "owner", ACCURACY(transfer.get("test_accuracy"))] +
                _verdict_cells(transfer))
  return rows


STEALING_HEADER = ["run", "suspect", "test accuracy", "agreement with victim",
                   "victim queries", "t", "p", "ΔP", "decision"]


def _suspects(run: Run) -> list[tuple[str, Any]]:
  """(name, entry) of each attack in config order, then the independent
  model."""
  attacks = run.metrics.get("attacks", {})
  return ([(name, attacks[name])
           for name in _in_config_order(run, "attacks", attacks)] +
          [("independent", run.metrics.get("independent"))])


def _stealing_row(run: Run, name: str, entry: Any) -> list[str]:
  entry = entry if isinstance(entry, Mapping) else {}
  return [f"`{run.name}`", name.replace("_", " "),
          ACCURACY(entry.get("test_accuracy")), RATE(entry.get("agreement")),
          str(entry.get("queries", "n/a")), STATISTIC(entry.get("statistic")),
          p_value(entry.get("p_value")),
          RATE(entry.get("delta_p")), str(entry.get("decision", "n/a"))]


def _verdicts_by_method(runs: Sequence[Run]) -> list[list[str]]:
  """One row per suspect, one cell per method: ``k/n: p, p, ...``, the
  seeds (in order) judged stolen (decision ``reject_h0``) out of those
  run, the inconclusive ones if any, then each seed's p-value (the layout
  of MOVE's Tables III-VI, seeds pooled)."""
  # Each method's runs in seed order, as {suspect: verdict} mappings.
  methods: dict[str, list[dict[str, Any]]] = {}
  for run in sorted(runs, key=lambda run: run.seed):
    methods.setdefault(str(lookup(run.config, "method")), []).append(
        dict(_suspects(run)))
  rows = []
  for name, _ in _suspects(runs[0]):
    row = [name.replace("_", " ")]
    for seeds in methods.values():
      decisions = [lookup(suspects, f"{name}.decision") for suspects in seeds]
      inconclusive = decisions.count(INCONCLUSIVE)
      counts = f"{decisions.count(REJECT)}/{len(seeds)}" + (
          f" ({inconclusive} inconclusive)" if inconclusive else "")
      row.append(counts + ": " + ", ".join(
          p_value(lookup(suspects, f"{name}.p_value")) for suspects in seeds))
    rows.append(row)
  return [["suspect"] + [f"`{method}`" for method in methods]] + rows


def model_stealing(runs: Sequence[Run]) -> str:
  """Ownership verification of stolen and independent models: the owner's
  models, then one row per suspect, then each method's verdicts over its
  seeds side by side (the layout of MOVE's Tables III-VI)."""
  owners = [[f"`{run.name}`", str(lookup(run.config, "method")),
             str(lookup(run.metrics, "method.setting", "")), str(run.seed),
             ACCURACY(run.metrics.get("victim_accuracy")),
             ACCURACY(run.metrics.get("benign_accuracy")),
             ACCURACY(run.metrics.get("accuracy_drop")),
             RATE(lookup(run.metrics,
                         "method.meta_classifier_held_out_accuracy")),
             p_value(lookup(run.metrics,
                            "method.controls.unseen_victim_like.p_value")),
             p_value(lookup(run.metrics,
                            "method.controls.unseen_benign.p_value"))]
            for run in runs]
  suspects = [_stealing_row(run, name, entry) for run in runs
              for name, entry in _suspects(run)]
  header, *side_by_side = _verdicts_by_method(runs)
  alpha = lookup(runs[0].metrics, "alpha", "n/a")
  return "\n\n".join([
      "The owner's models: the victim (watermarked) and the benign model "
      "on the owner's half of the training set; accuracy drop is benign "
      "minus victim; the meta-classifier's accuracy is on held-out "
      "transformed images of the victim and the benign model. The "
      "controls (MOVE) are the verifier's p-values on one more "
      "victim-like and one more benign model that its meta-classifier "
      "never saw: a verifier to trust has the first below alpha and the "
      "second above it.",
      markdown_table(["run", "method", "setting", "seed", "victim accuracy",
                      "benign accuracy", "accuracy drop",
                      "meta-classifier held-out accuracy",
                      "control: unseen victim-like p",
                      "control: unseen benign p"], owners),
      "Each suspect: the stolen models of the six attacks (on the thief's "
      "half) and an independent model (the thief's half, another seed "
      "and architecture), with the method's one-sided test; a model is "
      f"judged stolen (reject_h0) when p < alpha = {alpha}. ΔP is the mean "
      "difference of the test's paired scores (suspect minus benign).",
      markdown_table(STEALING_HEADER, suspects),
      "Each method's verdicts side by side: k/n is the number of seeds, "
      "of the n run, whose verdict judged the suspect stolen (reject_h0), "
      "then how many were inconclusive (MOVE's verifier's controls "
      "disowned its test) if any, then each seed's p-value in seed order. "
      "A method works where every stolen model is judged stolen (n/n) and "
      "the independent model is not (0/n).",
      markdown_table(header, side_by_side)])


BUILDERS: dict[str, Callable[[Sequence[Run]], str]] = {
    "dataset_watermark": dataset_watermark,
    "craft_poison": craft_poison,
    "model_watermark": model_watermark,
    "removal": report_removal.removal,
    "model_stealing": model_stealing,
}
