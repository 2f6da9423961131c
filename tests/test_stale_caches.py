"""A rerun with a changed config value never reuses a model, poison,
verdict or curve made under the old value: one test per launcher.

Each launcher's job runs once on digits (runlocal, a tiny MLP), then again
in the same workdir with one value that matters changed. A spy on the
engine records which checkpoints were restored and how many models were
fitted: only what does not depend on the changed value may be restored.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

from configs import craft_poison as craft_configs
from configs import dataset_watermark as dw_configs
from configs import model_stealing as ms_configs
from configs import model_watermark as mw_configs
from configs import removal as removal_configs
from configs import train as train_configs
from jaxwm import identity
from jaxwm.models import registry
from jaxwm.recipes import ablate_ubw_p
from jaxwm.recipes import alignment_transfer
from jaxwm.recipes import craft_poison
from jaxwm.recipes import dataset_watermark
from jaxwm.recipes import false_acceptance
from jaxwm.recipes import model_stealing
from jaxwm.recipes import model_watermark
from jaxwm.recipes import removal
from jaxwm.recipes import train as train_recipe
from jaxwm.train import checkpoint, loop, recipe

import tiny

TINY = "stale_cache_tests_mlp"


@pytest.fixture(scope="module", autouse=True)
def tiny_model():
  registry.register(TINY, tiny.Mlp)


def _config(configs, variant: str, **overrides):
  """``configs.get_config(variant)`` with the tiny model and ``overrides``
  (dotted names with ``__`` for the dots)."""
  config = configs.get_config(variant)
  config.model = TINY
  for name, value in overrides.items():
    _set(config, name.replace("__", "."), value)
  return config


def _set(config, name: str, value) -> None:
  *path, field = name.split(".")
  for part in path:
    config = config[part]
  config[field] = value


class _Spy:
  """Records the model folders restored and the models fitted."""

  def __init__(self, monkeypatch):
    self.restored: list[str] = []
    self.fitted: list[str | None] = []
    fit, restore = loop.fit, checkpoint.Checkpointer.restore

    def spy_fit(*args, **kwargs):
      self.fitted.append(kwargs.get("workdir"))
      return fit(*args, **kwargs)

    def spy_restore(checkpointer, step, like):
      directory = checkpointer._directory  # pylint: disable=protected-access
      self.restored.append(os.path.dirname(directory))
      return restore(checkpointer, step, like)

    monkeypatch.setattr(loop, "fit", spy_fit)
    monkeypatch.setattr(checkpoint.Checkpointer, "restore", spy_restore)

  def reset(self) -> None:
    self.restored.clear()
    self.fitted.clear()


@pytest.fixture
def spy(monkeypatch):
  return _Spy(monkeypatch)


def _folders(workdir: str) -> set[str]:
  return {os.path.join(workdir, name) for name in os.listdir(workdir)}


def test_train_refuses_a_changed_config(tmp_path, spy):
  config = _config(train_configs, "digits,runlocal")
  workdir = str(tmp_path)
  first = train_recipe.train_and_evaluate(config, workdir)
  spy.reset()
  assert train_recipe.train_and_evaluate(config, workdir) == first
  assert spy.restored == [os.path.join(workdir, "model")]
  config.seed = 5
  config.train.learning_rate = 0.5
  spy.reset()
  with pytest.raises(identity.StaleRunError) as error:
    train_recipe.train_and_evaluate(config, workdir)
  assert "  seed: 0 (on disk) != 5 (this run)" in str(error.value)
  assert "  train.learning_rate: 0.05 (on disk) != 0.5 (this run)" in str(
      error.value)
  assert spy.restored == []


@pytest.fixture(scope="module")
def watermark_run(tmp_path_factory, tiny_model):
  """A finished BadNets dataset-watermark run: (config, workdir, outcome)."""
  del tiny_model  # registered
  config = _config(dw_configs, "badnets,digits,runlocal")
  workdir = str(tmp_path_factory.mktemp("dataset_watermark"))
  return config, workdir, dataset_watermark.run_experiment(config, workdir)


def test_dataset_watermark_retrains_what_a_watermark_change_touches(
    watermark_run, spy):
  config, workdir, outcome = watermark_run
  before = _folders(workdir)
  (benign,) = [f for f in before if "benign_" in f]
  config = config.copy_and_resolve_references()
  config.watermark.poison_rate = 0.2
  metrics = dataset_watermark.run_experiment(config, workdir)["metrics"]
  # Only the benign model, which no watermark touches, is reused.
  assert spy.restored == [benign]
  assert len(spy.fitted) == 3
  assert len(_folders(workdir) - before) == 2
  assert metrics["watermark_key_digest"] != outcome["metrics"][
      "watermark_key_digest"]
  assert metrics["poison_rate"] == pytest.approx(2 * outcome["metrics"][
      "poison_rate"], abs=0.01)


def test_a_clean_model_is_not_restored_from_a_suspects_folder(watermark_run):
  config, workdir, _ = watermark_run
  suspect = dataset_watermark.marked_model_dir(
      workdir, config, config.watermark.to_dict(), "watermarked")
  clean, _ = recipe.load_datasets(config)
  # The suspect's own training run, with benign data instead of the marked.
  with pytest.raises(identity.StaleRunError,
                     match=r"train_data\.images: .*\n  train_data\.labels: "):
    recipe.train_model(config, clean, workdir=suspect,
                       stream=dataset_watermark.STREAMS["watermarked"])


def test_craft_poison_crafts_again_for_another_epsilon(tmp_path, spy):
  config = _config(craft_configs, "random_noise,digits,runlocal")
  workdir = str(tmp_path)
  first = craft_poison.run_experiment(config, workdir)["metrics"]
  (clean_victim,) = [f for f in _folders(workdir) if "clean_victim_" in f]
  config.poison.epsilon = 4
  spy.reset()
  second = craft_poison.run_experiment(config, workdir)["metrics"]
  # The clean victim does not depend on the poison; the poisoned one does.
  assert spy.restored == [clean_victim]
  assert len(spy.fitted) == 2
  assert second["poison_key_digest"] != first["poison_key_digest"]


def test_model_watermark_remarks_for_another_trigger_rate(tmp_path, spy):
  config = _config(mw_configs, "adi_fromscratch,digits,runlocal",
                   attack__names=("ftll",), piracy__enabled=False,
                   transfer__enabled=False)
  workdir = str(tmp_path)
  first = model_watermark.run_experiment(config, workdir)["metrics"]
  before = _folders(workdir)
  (unmarked,) = [f for f in before if "unmarked-" in f]
  config.watermark.triggers_per_batch = 4
  spy.reset()
  second = model_watermark.run_experiment(config, workdir)["metrics"]
  # The owner's keys and non-marked model are reused; the marked model and
  # the attack on it are trained again, in folders of their own.
  assert spy.restored == [unmarked]
  assert len(spy.fitted) == 3
  assert {os.path.basename(f).split("-")[0]
          for f in _folders(workdir) - before} == {"marked", "removal_ftll"}
  assert second["verification_key_digest"] == first["verification_key_digest"]


def test_false_acceptance_verifies_again_at_another_alpha(tmp_path, spy):
  config = _config(mw_configs, "false_acceptance,digits,runlocal",
                   false_acceptance__num_models=1)
  workdir = str(tmp_path)
  first = false_acceptance.run_experiment(config, workdir)["metrics"]
  assert len(spy.fitted) == 1
  spy.reset()
  assert false_acceptance.run_experiment(config, workdir)["metrics"] == first
  assert spy.fitted == []  # the same run resumes from its verdicts
  config.watermark.alpha = 0.5
  second = false_acceptance.run_experiment(config, workdir)["metrics"]
  # Verified again, by the model the first run exported.
  assert spy.fitted == []
  assert second["alpha"] == 0.5
  assert second["benign_accuracy"] == first["benign_accuracy"]
  assert second["exact_size_binomial"] > first["exact_size_binomial"]


def test_false_acceptance_verifies_again_after_a_change_of_code(
    tmp_path, spy, monkeypatch):
  config = _config(mw_configs, "false_acceptance,digits,runlocal",
                   false_acceptance__num_models=1)
  workdir = str(tmp_path)
  false_acceptance.run_experiment(config, workdir)
  verdicts = {f for f in _folders(workdir) if "verdicts-" in f}
  # Same version number, other sources (e.g. a fixed test): the verdict is
  # not reused, the model is.
  monkeypatch.setattr(identity, "source_digest", lambda: "0" * 64)
  spy.reset()
  false_acceptance.run_experiment(config, workdir)
  assert spy.fitted == []
  assert len({f for f in _folders(workdir) if "verdicts-" in f}) == (
      len(verdicts) + 1)


def test_ablate_ubw_p_measures_again_for_another_learning_rate(tmp_path,
                                                                spy):
  config = _config(dw_configs, "ubw_p,digits,runlocal",
                   train__schedule="step", ablation__epochs=(1,),
                   ablation__only="cnn16_balanced")
  workdir = str(tmp_path)
  first = ablate_ubw_p.run_ablation(config, workdir)["metrics"]["curves"]
  spy.reset()
  assert ablate_ubw_p.run_ablation(config, workdir)["metrics"][
      "curves"] == first
  assert spy.fitted == []  # the kept curve is read back
  config.train.learning_rate = 0.5
  second = ablate_ubw_p.run_ablation(config, workdir)["metrics"]["curves"]
  assert len(spy.fitted) == 1 and spy.restored == []
  assert second != first


def test_alignment_transfer_probes_a_new_victim_recipe(tmp_path, spy):
  config = _config(craft_configs, "random_noise,digits,runlocal")
  workdir = str(tmp_path)
  first = alignment_transfer.run_transfer(config, workdir)["metrics"]
  (surrogate,) = [f for f in _folders(workdir) if "surrogate_" in f]
  assert [point["epoch"] for point in first["curve"]] == [1]
  config.victim.num_epochs = 2
  spy.reset()
  second = alignment_transfer.run_transfer(config, workdir)["metrics"]
  # The surrogate is reused; the victim is trained and probed again.
  assert spy.restored == [surrogate]
  assert spy.fitted == [surrogate, None]
  assert [point["epoch"] for point in second["curve"]] == [1, 2]
  assert second["surrogate"] == first["surrogate"]


def test_removal_repairs_again_for_another_learning_rate(tmp_path, spy,
                                                         monkeypatch):
  config = _config(removal_configs, "noise,digits,runlocal",
                   removal__columns=("fine_tuning_all",))
  config.model_kwargs = {}  # the runlocal CNN's widths
  workdir = str(tmp_path)
  detected = []
  run_detectors = removal.detector_suite.run_detectors
  monkeypatch.setattr(removal.detector_suite, "run_detectors",
                      lambda *args, **kwargs: detected.append(1) or
                      run_detectors(*args, **kwargs))
  first = removal.run_experiment(config, workdir)["metrics"]
  before = _folders(workdir)
  (marked,) = [f for f in before if "noise_watermarked_" in f]
  config.defenses.fine_tuning_all.settings.learning_rate = 0.1
  spy.reset()
  second = removal.run_experiment(config, workdir)["metrics"]
  # The watermarked model is reused; the repair is trained again in a
  # folder of its own, and its curve measured again.
  assert spy.restored == [marked]
  assert len(spy.fitted) == 2
  assert {os.path.basename(f).split("_seed")[0]
          for f in _folders(workdir) - before} == {
              f"noise_fine_tuning_all_digits_{TINY}", f"matrix_digits_{TINY}"}
  assert second["cells"]["none"] == first["cells"]["none"]
  assert len(second["curves"]["fine_tuning_all"]) == (
      config.defenses.fine_tuning_all.settings.num_epochs + 1)
  # The detectors judge the watermarked model alone: run once, reused by
  # the second matrix with their grid.
  assert detected == [1]
  assert second["detectors"] == first["detectors"]
  grid = second["figures"]["neural_cleanse"]
  assert os.path.dirname(grid) != os.path.dirname(
      first["figures"]["neural_cleanse"]) and os.path.exists(grid)
  # Switched off, the detectors are neither run nor reported; the cells are
  # the same repairs'.
  config.removal.detectors = False
  third = removal.run_experiment(config, workdir)["metrics"]
  assert detected == [1]
  assert "detectors" not in third and "neural_cleanse" not in third["figures"]
  assert third["cells"] == second["cells"]


def _move_config():
  """MOVE black-box on digits, the direct copy only."""
  return _config(ms_configs, "move_blackbox,digits,runlocal",
                 attacks=("direct_copy",))


@pytest.fixture(scope="module")
def move_run(tmp_path_factory, tiny_model):
  """A finished run of :func:`_move_config`: (its workdir, its metrics).
  Each test reruns in a copy of the workdir, so that one first run serves
  them all."""
  del tiny_model  # registered
  workdir = str(tmp_path_factory.mktemp("model_stealing"))
  return workdir, model_stealing.run_experiment(_move_config(),
                                                workdir)["metrics"]


def _copy_of(move_run, tmp_path) -> tuple[str, dict]:
  """A copy of ``move_run``'s workdir in ``tmp_path``: (workdir, metrics)."""
  template, metrics = move_run
  workdir = str(tmp_path / "workdir")
  shutil.copytree(template, workdir)
  return workdir, metrics


def test_model_stealing_rewatermarks_for_another_move_seed(move_run, tmp_path,
                                                           spy):
  config = _move_config()
  workdir, first = _copy_of(move_run, tmp_path)
  before = _folders(workdir)
  kept = {f for f in before
          if os.path.basename(f).startswith(("benign", "independent",
                                             "control_benign", "reference"))}
  assert len(kept) == (config.meta.num_models + 3 +
                       config.meta.num_references - 1)
  config.move.seed = 1
  spy.reset()
  second = model_stealing.run_experiment(config, workdir)["metrics"]
  # The benign, reference, control benign and independent models do not
  # depend on the watermark; the victims, the control victim-like model and the
  # meta-classifier are trained again, in new folders.
  assert set(spy.restored) == kept
  assert len(spy.fitted) == len(kept) + config.meta.num_models + 2
  assert {os.path.basename(f).split("_")[0].rstrip("0123456789")
          for f in _folders(workdir) - before} == {"victim", "meta",
                                                   "control"}
  assert second["benign_accuracy"] == first["benign_accuracy"]


def _move_rerun(move_run, tmp_path, spy,
                change) -> tuple[Any, dict, set[str]]:
  """``move_run``'s job with ``change(config)``, run again in a copy of its
  workdir: (the config, the second run's metrics, the folders it added)."""
  config = _move_config()
  workdir, _ = _copy_of(move_run, tmp_path)
  before = _folders(workdir)
  change(config)
  spy.reset()
  metrics = model_stealing.run_experiment(config, workdir)["metrics"]
  return config, metrics, _folders(workdir) - before


@pytest.mark.parametrize("change", [
    lambda config: setattr(config.move.black_box, "num_epochs", 2),
    lambda config: setattr(config.move, "verification_fraction",
                           config.move.verification_fraction + 0.1)],
                         ids=["meta_setting", "meta_data"])
def test_model_stealing_retrains_only_the_meta_classifier_for_its_settings(
    move_run, tmp_path, spy, change):
  _, _, new = _move_rerun(move_run, tmp_path, spy, change)
  # Every model is restored; the meta-classifier alone is trained again,
  # in a new folder.
  assert {os.path.basename(f).split("-")[0] for f in new} == {
      "meta_black_box"}
  models = [folder for folder in spy.fitted
            if folder and not folder.startswith(tuple(new))]
  assert models and set(models) <= set(spy.restored)
  assert any(folder and folder.startswith(tuple(new))
             for folder in spy.fitted)


def test_model_stealing_trains_nothing_for_another_test_setting(
    move_run, tmp_path, spy):
  def change(config):
    config.move.alpha = 0.05
    config.move.m_black_box -= 1

  config, metrics, new = _move_rerun(move_run, tmp_path, spy, change)
  # The test's level and sample size key no model and no meta-classifier:
  # everything is restored, and the verdict uses the new settings.
  assert not new
  assert spy.fitted and set(spy.fitted) - {None} <= set(spy.restored)
  verdict = metrics["attacks"]["direct_copy"]
  assert verdict["alpha"] == 0.05
  assert verdict["m"] == config.move.m_black_box


def test_model_stealing_takes_more_meta_models_in_the_same_workdir(
    move_run, tmp_path, spy):
  config, metrics, new = _move_rerun(
      move_run, tmp_path, spy, lambda config: setattr(
          config.meta, "num_models", config.meta.num_models + 1))
  # The controls' streams follow the meta-classifier's models: new
  # controls in new folders; the first models are restored.
  assert metrics["method"]["meta_models"] == config.meta.num_models
  names = {os.path.basename(f) for f in new}
  assert sum(name.startswith("control_") for name in names) == 2
  assert any(os.path.basename(f).startswith("victim_")
             for f in spy.restored)
