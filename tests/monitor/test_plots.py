"""The PNG pictures and the TensorBoard log of jaxwm.monitor."""

from __future__ import annotations

import glob
import os
import struct
import sys

import numpy as np
import pytest

from jaxwm.monitor import events, plots

pytest.importorskip("matplotlib")
image = pytest.importorskip("matplotlib.image")


def _pixels(path: str) -> np.ndarray:
  """The RGBA pixels [H, W, 4] of the PNG at ``path``."""
  return image.imread(path)


def test_curves_draw_one_line_per_model(tmp_path):
  path = plots.save_curves(
      {"benign": {"epoch": [1, 2], "loss": [2.0, 1.0],
                  "accuracy": [0.3, 0.6]},
       "marked": {"epoch": [1, 2], "loss": [2.2, 0.9],
                  "accuracy": [0.2, 0.7]}}, str(tmp_path / "c.png"))
  pixels = _pixels(path)
  assert pixels.shape[:2] == (400, 1000)
  assert pixels[..., :3].std() > 0  # not a blank picture


def test_image_grid_shows_the_images(tmp_path):
  images = np.zeros((3, 8, 8, 1), np.uint8)
  images[:, 2:6, 2:6] = 255
  path = plots.save_image_grid(images, str(tmp_path / "g.png"),
                               titles=["a", "b", "c"], columns=2)
  pixels = _pixels(path)[..., :3]
  # The white squares on black: both extremes are drawn.
  assert pixels.min() < 0.05 and pixels.max() > 0.95


@pytest.mark.parametrize("images, message", [
    (np.zeros((2, 8, 8, 1), np.float32), "uint8"),
    (np.zeros((0, 8, 8, 1), np.uint8), "N >= 1"),
    (np.zeros((2, 8, 8, 2), np.uint8), "1 or 3"),
])
def test_image_grid_refuses_what_is_not_images(tmp_path, images, message):
  with pytest.raises(ValueError, match=message):
    plots.save_image_grid(images, str(tmp_path / "g.png"))


def test_image_grid_needs_one_title_per_image(tmp_path):
  with pytest.raises(ValueError, match="2 titles for 3 images"):
    plots.save_image_grid(np.zeros((3, 4, 4, 3), np.uint8),
                          str(tmp_path / "g.png"), titles=["a", "b"])


def test_histogram_of_p_values_on_a_log_scale(tmp_path):
  path = plots.save_histogram([1e-9, 0.2, 0.5, 0.9], str(tmp_path / "h.png"),
                              xlabel="p-value", log10=True,
                              lines={"alpha": 0.01})
  assert _pixels(path).shape[:2] == (400, 600)
  with pytest.raises(ValueError, match="no values"):
    plots.save_histogram([], str(tmp_path / "e.png"), xlabel="p")


def test_missing_matplotlib_says_how_to_install_it(monkeypatch):
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  with pytest.raises(plots.PlotsUnavailableError,
                     match=r'pip install "jaxwm\[plots\]"'):
    plots.require("matplotlib")


def _scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
  """{tag: [(step, value)]} read back from the event files under logdir
  (TFRecord framing: length u64, its CRC, the Event proto, its CRC)."""
  event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")
  found = {}
  for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
    with open(path, "rb") as file:
      data = file.read()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack("<Q", data[offset:offset + 8])
      event = event_pb2.Event.FromString(
          data[offset + 12:offset + 12 + length])
      offset += 16 + length
      for value in event.summary.value:
        found.setdefault(value.tag, []).append(
            (event.step, value.simple_value))
  return found


def test_event_log_is_readable_back_per_model(tmp_path):
  pytest.importorskip("tensorboardX")
  log = events.EventLog(str(tmp_path))
  log.scalars("benign model/1", 10, {"train/loss": 1.5})
  log.scalars("benign model/1", 20, {"train/loss": 0.5})
  log.scalars("marked", 10, {"train/accuracy": 0.75})
  log.close()
  assert sorted(os.listdir(tmp_path)) == ["benign_model_1", "marked"]
  assert _scalars(str(tmp_path / "benign_model_1")) == {
      "train/loss": [(10, 1.5), (20, 0.5)]}
  assert _scalars(str(tmp_path / "marked")) == {
      "train/accuracy": [(10, 0.75)]}
