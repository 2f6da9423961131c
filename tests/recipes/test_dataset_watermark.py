"""Tests of the dataset watermark experiment's pieces (no training here; the
end-to-end run is in tests/test_dataset_watermark_launcher.py)."""

from __future__ import annotations

import types

import jax
import ml_collections
import numpy as np
import pytest

from configs import dataset_watermark as dw_config
from jaxwm import identity
from jaxwm.data.dataset import Dataset
from jaxwm.poison import methods
from jaxwm.poison import ownership
from jaxwm.poison import poisoned_label
from jaxwm.recipes import ablate_ubw_p
from jaxwm.recipes import common
from jaxwm.recipes import dataset_watermark

K = 4


def _dataset(n=40):
  rng = np.random.default_rng(0)
  return Dataset(rng.integers(0, 200, (n, 8, 8, 1), dtype=np.uint8),
                 np.arange(n) % K, K)


def _key(method, **settings):
  config = {"method": method, "patch_size": 2, **settings}
  return poisoned_label.mark(_dataset(), config, jax.random.key(0))[1]


def _patched(key, images):
  """bool [B]: the key's patch is present in float images."""
  patch = key.trigger.alpha > 0
  return np.all(np.abs(images - key.trigger.pattern)[:, patch] < 0.5 / 255,
                axis=1)


def test_metrics_of_a_targeted_suspect_worked_by_hand():
  key = _key("badnets", target_label=1)
  test = _dataset(n=8)  # labels 0 1 2 3 0 1 2 3

  def predict_proba(images):
    images = np.asarray(images)
    n = len(images)
    # Benign: right except sample 2 (predicted 0). Triggered: class 1,
    # except the sample of index 3 of the triggered batch (predicted 0).
    if _patched(key, images).all():
      predicted = np.ones(n, int)
      predicted[3] = 0
    else:
      predicted = np.arange(n) % K
      predicted[2] = 0
    return np.eye(K)[predicted] * 0.9 + 0.1 / K

  values = common.watermark_metrics(predict_proba, key, test)
  # Eligible: the 6 samples whose label is not the target 1 (indices
  # 0, 2, 3, 4, 6, 7), labels 0 2 3 0 2 3; triggered predictions
  # 1 1 1 0 1 1: five hits; of the benign-correct ones (all but index 2)
  # four of five.
  assert values["benign_accuracy"] == pytest.approx(7 / 8)
  assert values["asr_a"] == pytest.approx(5 / 6)
  assert values["asr_c"] == pytest.approx(4 / 5)
  # Class 0 (2 samples): predictions {1, 0}: ln 2; classes 2, 3: 0.
  assert values["d_p"] == pytest.approx(2 / 6 * np.log(2), rel=1e-6)
  assert values["top_class_share"] == pytest.approx(5 / 6)
  assert 0.0 < values["d_s"] < np.log(K) and values["d_c"] >= values["d_s"]


def test_an_undefined_attack_success_rate_is_reported_with_its_reason():
  key = _key("badnets", target_label=1)
  test = _dataset(n=8)

  def always_the_target(images):
    return np.tile(np.eye(K)[1] * 0.9 + 0.1 / K, (len(images), 1))

  # No eligible (non-target) image is right without the trigger: ASR-C is a
  # rate over no sample; ASR-A (every triggered image hits) is defined.
  values = common.watermark_metrics(always_the_target, key, test)
  assert values["asr_a"] == 1.0
  assert set(values["asr_c"]) == {"error"}
  assert "ASR-C is undefined" in values["asr_c"]["error"]
  table = dataset_watermark.format_table({
      **values, "benign_accuracy_no_watermark": 0.9, "source_classes": [0],
      "p_value": {"malicious": 1e-5}, "delta_p": {"malicious": 0.6}})
  lines = table.splitlines()
  assert lines[0] == "BA 0.2500 (no watermark: 0.9000)"
  assert lines[2].endswith("classes [0]")
  assert lines[4].split() == ["1.0000", "n/a", f"{values['d_p']:.4f}"]
  assert lines[5].split() == ["independent_t", "independent_m", "malicious"]
  assert lines[-1].split() == ["p-value", "n/a", "n/a", "1e-05"]


def _class_coded_dataset(n=40):
  """Images whose top rows carry the class (grey 40 * (class + 1))."""
  rng = np.random.default_rng(0)
  images = rng.integers(0, 100, (n, 8, 8, 1), dtype=np.uint8)
  labels = np.arange(n) % K
  images[:, :2] = (40 * (labels + 1))[:, None, None, None]
  return Dataset(images, labels, K)


def test_the_papers_figures_are_measured_on_the_source_class_only():
  key = _key("badnets", target_label=1)
  test = _class_coded_dataset()

  def predict_proba(images):
    # Right on every clean image; the patch sends class 0 alone to the
    # target 1: a backdoor of the source class.
    images = np.asarray(images)
    predicted = np.rint(images[:, 0, 0, 0] * 255 / 40).astype(int) - 1
    predicted[_patched(key, images) & (predicted == 0)] = 1
    return np.eye(K)[predicted] * 0.9 + 0.1 / K

  paper = common.watermark_metrics(predict_proba, key, test, (0,))
  every = common.watermark_metrics(predict_proba, key, test)
  assert paper["asr_a"] == paper["asr_c"] == 1.0
  assert paper["d_p"] == pytest.approx(0.0, abs=1e-6)
  # Every class but the target: classes 0, 2 and 3, one in three hit.
  assert every["asr_a"] == pytest.approx(1 / 3)
  assert every["benign_accuracy"] == paper["benign_accuracy"] == 1.0
  verdicts = {
      classes: ownership.verify_dataset_ownership(
          predict_proba, key, test, m=10, source_classes=classes)
      for classes in ((0,), None)}
  assert verdicts[(0,)].delta_p == pytest.approx(0.9)
  assert verdicts[None].delta_p < 0.5


def test_eligible_test_images_are_those_of_the_evaluated_classes():
  labels = np.arange(8) % K
  key = _key("ubw_p", source_classes=(0, 2))
  np.testing.assert_array_equal(ownership.eligible_indices(key, labels),
                                [0, 2, 4, 6])
  np.testing.assert_array_equal(
      ownership.eligible_indices(key, labels, (0,)), [0, 4])
  # Classes the watermark does not act on are not evaluated.
  assert ownership.evaluated_classes(key, (0, 3)) == (0,)
  targeted = _key("badnets", target_label=2, source_classes=(1, 2))
  np.testing.assert_array_equal(
      ownership.eligible_indices(targeted, labels), [1, 5])
  with pytest.raises(ValueError, match=r"source_classes=\(2,\) leaves no "
                     "class the badnets watermark acts on"):
    ownership.eligible_indices(targeted, labels, (2,))


@pytest.mark.parametrize("method", ["badnets", "blended", "wanet", "ubw_p"])
def test_the_independent_trigger_is_the_one_its_model_is_trained_with(
    method):
  config = {"method": method, "patch_size": 2, "patch_position": (0, 0)}
  rng = jax.random.key(3)
  _, key = methods.mark_dataset(_dataset(), config, rng)
  trigger = methods.watermark_trigger(config, (8, 8, 1), rng)
  images = _dataset(n=8).float_images()
  np.testing.assert_array_equal(np.asarray(trigger(images)),
                                np.asarray(key.trigger(images)))
  other = methods.watermark_trigger(config, (8, 8, 1), jax.random.key(4))
  same = np.array_equal(np.asarray(other(images)), np.asarray(
      trigger(images)))
  # Keyed triggers (Blended's pattern, WaNet's field) change with the key.
  assert same == (method in ("badnets", "ubw_p"))


def test_label_consistent_stamps_its_configured_patch():
  config = {"method": "label_consistent", "patch_size": 2,
            "patch_pattern": "white"}
  trigger = methods.watermark_trigger(config, (8, 8, 1), jax.random.key(0))
  expected = poisoned_label.build_trigger(
      poisoned_label.as_config({**config, "method": "badnets"}), (8, 8, 1),
      jax.random.key(0))
  images = _dataset(n=4).float_images()
  np.testing.assert_array_equal(np.asarray(trigger(images)),
                                np.asarray(expected(images)))


def test_reproduction_and_demo_configs_follow_the_paper():
  ubw = dw_config.get_config("ubw_p,fashion_mnist")
  assert ubw.watermark.label_draw == "independent"
  assert tuple(ubw.verify.source_classes) == (0,)
  assert ubw.verify.independent_trigger_model
  badnets = dw_config.get_config("badnets,fashion_mnist")
  assert badnets.watermark.target_label == 1  # Section 5.2: y_t = 1
  demo = dw_config.get_config("ubw_p,fashion_mnist,demo")
  assert (demo.dataset, demo.model) == ("fashion_mnist", "cnn")
  assert demo.train.num_epochs < ubw.train.num_epochs
  assert not demo.verify.independent_trigger_model
  assert demo.train_fraction == ubw.train_fraction
  assert demo.watermark == ubw.watermark


def test_model_folders_are_named_and_shared_as_documented():
  ubw = dw_config.get_config("ubw_p,fashion_mnist")
  badnets = dw_config.get_config("badnets,fashion_mnist")
  benign = common.model_dir("/w", "benign", ubw)
  assert benign.startswith("/w/benign_fashion_mnist_cnn_seed0-")
  # The benign model depends on the recipe, not on the watermark.
  assert common.model_dir("/w", "benign", badnets) == benign
  assert common.model_dir("/w", "benign", ubw, "x") != benign
  other_seed = dw_config.get_config("ubw_p,fashion_mnist")
  other_seed.seed = 3
  assert common.model_dir("/w", "benign", other_seed).startswith(
      "/w/benign_fashion_mnist_cnn_seed3-")
  cifar = dw_config.get_config("ubw_p,tfds:cifar10,resnet18")
  assert common.model_dir("/w", "benign", cifar).startswith(
      "/w/benign_tfds_cifar10_resnet18_seed0-")


def test_mark_dataset_dispatches_and_checks_its_inputs():
  config = dw_config.get_config("ubw_p,fashion_mnist")
  marked, key = methods.mark_dataset(_dataset(), config.watermark,
                                        jax.random.key(0))
  assert key.method == "ubw_p" and key.target_label is None
  assert marked.images.shape == (40, 8, 8, 1)
  with pytest.raises(ValueError, match="needs a surrogate model"):
    methods.mark_dataset(_dataset(), {"method": "label_consistent"},
                            jax.random.key(0))
  with pytest.raises(ValueError, match="unknown watermark method 'ubw_c'"):
    methods.mark_dataset(_dataset(), {"method": "ubw_c"},
                            jax.random.key(0))


def test_watermark_keys_differ_by_role_and_seed():
  config = dw_config.get_config("badnets,fashion_mnist")
  data = [jax.random.key_data(dataset_watermark.watermark_rng(config, role))
          for role in ("watermarked", "independent")]
  assert not np.array_equal(*data)
  config.seed = 1
  assert not np.array_equal(jax.random.key_data(
      dataset_watermark.watermark_rng(config, "watermarked")), data[0])


def test_poison_fit_counts_poisoned_samples_predicted_as_their_label():
  dataset = _dataset()
  marked, key = methods.mark_dataset(
      dataset, {"method": "ubw_p", "poison_rate": 0.25}, jax.random.key(1))
  poisoned = key.poisoned_indices
  wanted = dict(zip(map(bytes, marked.images[poisoned]),
                    marked.labels[poisoned]))

  def predict(images):
    # Right on the first 6 poisoned samples, wrong on the other 4.
    labels = [int(wanted[bytes(image)]) for image in images]
    return np.array([(y + (i >= 6)) % K for i, y in enumerate(labels)])

  assert ablate_ubw_p.poison_fit(predict, marked, key) == pytest.approx(0.6)


def test_curve_needs_a_schedule_that_ignores_the_total():
  config = ml_collections.ConfigDict(
      {"train": {"schedule": "cosine", "num_epochs": 3}})
  with pytest.raises(ValueError, match="depends on the number of epochs"):
    ablate_ubw_p.dispersibility_curve(config, None, None, None, [1, 2], "/w")
  config.train.schedule = "step"
  with pytest.raises(ValueError, match="increasing positive"):
    ablate_ubw_p.dispersibility_curve(config, None, None, None, [2, 2], "/w")


class _FakeTrainer:
  """Stands in for the engine: records the epoch counts it trains to and
  returns a model that knows every training label and is unsure of all
  else."""

  def __init__(self, marked):
    self.labels = dict(zip(map(bytes, marked.images), marked.labels))
    self.trained = []

  def __call__(self, config, data, *, workdir, stream):
    self.trained.append(config.train.num_epochs)
    return types.SimpleNamespace(
        predict=lambda images: np.array(
            [self.labels[bytes(image)] for image in images]),
        predict_proba=lambda images: np.full((len(images), K), 1 / K))


def test_curve_keeps_its_points_and_trains_only_for_new_counts(
    tmp_path, monkeypatch):
  config = dw_config.get_config("ubw_p,digits,runlocal")
  config.train.schedule = "step"
  marked, key = methods.mark_dataset(
      _dataset(), {"method": "ubw_p", "poison_rate": 0.25}, jax.random.key(1))
  trainer = _FakeTrainer(marked)
  monkeypatch.setattr(ablate_ubw_p.recipe, "train_model", trainer)
  workdir = str(tmp_path / "run")
  first = ablate_ubw_p.dispersibility_curve(config, marked, key, _dataset(n=8),
                                        [2, 4], workdir)
  assert trainer.trained == [2, 4]
  assert [p["epochs"] for p in first] == [2, 4]
  assert first[0]["poison_fit"] == 1.0
  assert first[0]["d_p"] == pytest.approx(0.0)  # uniform: argmax class 0
  again = ablate_ubw_p.dispersibility_curve(config, marked, key, _dataset(n=8),
                                        [2, 4, 6], workdir)
  assert trainer.trained == [2, 4, 6] and again[:2] == first
  with pytest.raises(ValueError, match="trained past 3 epochs"):
    ablate_ubw_p.dispersibility_curve(config, marked, key, _dataset(n=8), [3],
                                  workdir)
  # The points kept belong to this run and these data: another learning
  # rate, or another test set, is refused before any training.
  config.train.learning_rate = 0.5
  with pytest.raises(identity.StaleRunError,
                     match=r"train\.learning_rate: 0\.05 \(on disk\) != 0\.5"):
    ablate_ubw_p.dispersibility_curve(config, marked, key, _dataset(n=8),
                                  [2, 4, 6], workdir)
  config.train.learning_rate = 0.05
  with pytest.raises(identity.StaleRunError, match=r"test\.images: "):
    ablate_ubw_p.dispersibility_curve(config, marked, key, _dataset(n=12),
                                  [2, 4, 6], workdir)
  assert trainer.trained == [2, 4, 6]
