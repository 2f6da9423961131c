"""The model-watermark configs (the runlocal variants run end to end in
tests/test_launchers_runlocal.py)."""

import pytest

from configs import model_watermark as model_watermark_configs


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
  assert config.attack.num_epochs == epochs
  with pytest.raises(ValueError, match="adi_fromscratch, adi_pretrained"):
    model_watermark_configs.get_config("fashion_mnist")
