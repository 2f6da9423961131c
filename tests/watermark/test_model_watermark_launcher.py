"""The model-watermark configs (the runlocal variants run end to end in
tests/test_launchers_runlocal.py)."""

import pytest

from configs import model_watermark as model_watermark_configs
from jaxwm.recipes import model_watermark


def test_config_variants():
  config = model_watermark_configs.get_config("adi_pretrained,fashion_mnist")
  assert config.watermark.mode == "pretrained"
  # Piracy and transfer learning are run on FROMSCRATCH models (Sec. 4.4).
  assert not config.piracy.enabled and not config.transfer.enabled
  assert model_watermark_configs.get_config(
      "adi_fromscratch,digits").piracy.enabled
  assert (config.dataset, config.model) == ("fashion_mnist", "cnn")
  # The paper's schedule: / 10 after each third; fine-tuning at the last rate.
  assert config.train.schedule == "step"
  epochs = config.train.num_epochs
  assert tuple(config.train.milestones) == (epochs // 3, 2 * epochs // 3)
  # The paper's attacker (Section 4.4): as many images (the other half of
  # the training set) and epochs as training.
  assert config.attack.held_out_fraction == 0.5
  assert config.attack.num_epochs is None
  assert model_watermark.attack_epochs(config) == epochs
  config.attack.num_epochs = 3
  assert model_watermark.attack_epochs(config) == 3
  with pytest.raises(ValueError, match="adi_fromscratch, adi_pretrained"):
    model_watermark_configs.get_config("fashion_mnist")


def test_attack_budget_counts_images_epochs_and_steps():
  config = model_watermark_configs.get_config("adi_fromscratch,fashion_mnist")
  config.train.batch_size = 100
  # The earlier attacker: a quarter of the owner's images, same epochs.
  config.attack.num_epochs = None
  budget = model_watermark.attack_budget(config, 48000, 12000)
  epochs = config.train.num_epochs
  assert budget == {"owner_images": 48000, "owner_epochs": epochs,
                    "owner_steps": 480 * epochs, "attacker_images": 12000,
                    "attacker_epochs": epochs,
                    "attacker_steps": 120 * epochs}
