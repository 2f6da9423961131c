"""The alignment-transfer recipe: the surrogate's alignment and the curve."""

import numpy as np
import pytest

from configs import craft_poison as craft_configs
from jaxwm.recipes import alignment_transfer


def _config():
  config = craft_configs.get_config("availability,digits,runlocal")
  config.model_kwargs.width = 8
  config.train.num_epochs = 2
  return config


@pytest.mark.parametrize("method", ["availability", "random_noise"])
def test_recipe_reports_the_surrogate_and_the_curve(tmp_path, method):
  config = _config()
  config.method = method
  metrics = alignment_transfer.run_transfer(config, str(tmp_path))["metrics"]
  assert set(metrics["surrogate"]) == {"alignment", "clean_alignment"}
  assert 0.0 <= metrics["surrogate"]["alignment"] <= 2.0
  assert [point["epoch"] for point in metrics["curve"]] == [1, 2]
  assert np.isfinite([p["alignment"] for p in metrics["curve"]]).all()


def test_recipe_refuses_watermarks_and_defences(tmp_path):
  config = craft_configs.get_config("ubw_c,digits,runlocal")
  with pytest.raises(ValueError, match="ubw_c"):
    alignment_transfer.run_transfer(config, str(tmp_path))
  config = _config()
  config.defense.name = "dp_sgd"
  with pytest.raises(ValueError, match="dp_sgd"):
    alignment_transfer.run_transfer(config, str(tmp_path))
