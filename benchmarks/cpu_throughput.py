r"""CPU training speed: the jaxwm engine's step beside the same PyTorch model.

The jaxwm side times the real step (:func:`jaxwm.train.make_train_step`,
uint8 batch already on the device, state donated) of the recipe in
``configs/train.py`` (SGD with Nesterov momentum and weight decay, no
augmentation); the PyTorch side runs the same network (the reference
models in ``benchmarks/torch_cnn.py`` and ``benchmarks/torch_resnet.py``),
loss and optimiser on the CPU build of PyTorch, ``channels_last``,
``torch.autocast`` for bf16. Both run in one process in alternating rounds
(jaxwm, PyTorch, jaxwm, ...), so that other jobs on a shared machine slow
both alike; each round times ``--steps`` steps after ``--warmup`` untimed
ones. One JSON line per (model, dtype): the median images per second of
each side over the rounds, their min and max, the ratio of the medians
and the median of the per-round ratios (the more robust figure on a loaded
machine), with the load average before and after::

  python -m benchmarks.cpu_throughput                     # Fashion-MNIST CNN
  python -m benchmarks.cpu_throughput --model=resnet18    # ResNet-18, 32x32x3

Defaults: ``cnn`` on 28x28x1 at batch 128, ``resnet18`` on 32x32x3 at
batch 64, 7 rounds, float32. Synthetic inputs: this measures speed only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time

import jax
import numpy as np
from absl import app, flags

from configs import train as train_config
from jaxwm import host_memory
from jaxwm import train
from jaxwm.models import get_model

_MODEL = flags.DEFINE_enum("model", "cnn", ["cnn", "resnet18"],
                           "Network to time.")
_BATCH = flags.DEFINE_integer("batch_size", None,
                              "Batch size (default: the model's).")
_DTYPES = flags.DEFINE_list("dtypes", ["float32"],
                            "Compute dtypes (float32, bfloat16).")
_ROUNDS = flags.DEFINE_integer("rounds", 7, "Alternating timed rounds.")
_STEPS = flags.DEFINE_integer("steps", None,
                              "Steps per round (default: the model's).")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps before round 1.")

NUM_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Workload:
  image_shape: tuple[int, int, int]  # H, W, C
  batch_size: int
  steps: int


WORKLOADS = {"cnn": Workload((28, 28, 1), 128, 10),
             "resnet18": Workload((32, 32, 3), 64, 2)}


def _optimizer_config(model: str):
  """The recipe's optimiser with a constant learning rate."""
  config = train_config.training_config(model)
  config.schedule = "constant"
  return config


def _synthetic_batch(workload: Workload, batch_size: int):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (batch_size, *workload.image_shape),
                        dtype=np.uint8)
  labels = rng.integers(0, NUM_CLASSES, batch_size).astype(np.int32)
  return images, labels


def jax_step_runner(model_name: str, dtype: str, images: np.ndarray,
                    labels: np.ndarray):
  """``run(steps)``: that many jaxwm training steps, finished on return."""
  model = get_model(model_name, NUM_CLASSES, dtype=dtype)
  optimizer = train.make_optimizer(_optimizer_config(model_name), 1, 1)
  mesh = train.make_mesh()
  holder = {"state": train.replicate(train.create_train_state(
      model, optimizer, images.shape[1:], jax.random.PRNGKey(0)), mesh)}
  step = train.make_train_step(model, optimizer, mesh=mesh)
  batch = jax.device_put({"image": images, "label": labels},
                         train.batch_sharded(mesh))
  key = jax.random.PRNGKey(1)

  def run(steps: int) -> None:
    for _ in range(steps):
      holder["state"], metrics = step(holder["state"], batch, key)
    jax.block_until_ready(metrics)

  return run


def torch_step_runner(model_name: str, dtype: str, images: np.ndarray,
                      labels: np.ndarray):
  """``run(steps)``: that many PyTorch training steps of the same model."""
  import torch  # pylint: disable=g-import-not-at-top
  from benchmarks import torch_cnn, torch_resnet  # pylint: disable=g-import-not-at-top

  height, width, channels = images.shape[1:]
  if model_name == "cnn":
    model = torch_cnn.CNN(channels, (height, width), NUM_CLASSES)
  else:
    model = torch_resnet.resnet18(NUM_CLASSES)
  model = model.to(memory_format=torch.channels_last).train()
  config = _optimizer_config(model_name)
  optimizer = torch.optim.SGD(model.parameters(), lr=config.learning_rate,
                              momentum=config.momentum,
                              nesterov=config.nesterov,
                              weight_decay=config.weight_decay)
  uint8_images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(
      memory_format=torch.channels_last)
  targets = torch.from_numpy(labels).long()
  autocast = torch.autocast("cpu", dtype=torch.bfloat16,
                            enabled=dtype == "bfloat16")
  loss_fn = torch.nn.CrossEntropyLoss()

  def run(steps: int) -> None:
    for _ in range(steps):
      optimizer.zero_grad(set_to_none=True)
      with autocast:
        logits = model(uint8_images.float() / 255.0)
      loss = loss_fn(logits.float(), targets)
      loss.backward()
      optimizer.step()

  return run


def _images_per_second(run, steps: int, batch_size: int) -> float:
  start = time.perf_counter()
  run(steps)
  return steps * batch_size / (time.perf_counter() - start)


def _summary(values: list[float]) -> dict[str, float]:
  return {"median": round(statistics.median(values), 1),
          "min": round(min(values), 1), "max": round(max(values), 1)}


def compare(model_name: str, dtype: str, batch_size: int, steps: int,
            rounds: int, warmup: int) -> dict:
  """One JSON-ready row: both sides timed in alternating rounds."""
  import torch  # pylint: disable=g-import-not-at-top

  workload = WORKLOADS[model_name]
  images, labels = _synthetic_batch(workload, batch_size)
  runners = {"jax": jax_step_runner(model_name, dtype, images, labels),
             "torch": torch_step_runner(model_name, dtype, images, labels)}
  for run in runners.values():
    run(warmup)
  load_before = os.getloadavg()[0]
  speeds = {name: [] for name in runners}
  for _ in range(rounds):
    for name, run in runners.items():
      speeds[name].append(_images_per_second(run, steps, batch_size))
  jax_speed, torch_speed = (_summary(speeds["jax"]),
                            _summary(speeds["torch"]))
  return {
      "benchmark": "cpu_throughput", "model": model_name,
      "input": "x".join(map(str, workload.image_shape)),
      "batch_size": batch_size, "dtype": dtype,
      "device": jax.devices()[0].device_kind, "cpu_count": os.cpu_count(),
      "jax_version": jax.__version__, "torch_version": torch.__version__,
      "malloc": host_memory.allocator_name(),
      "torch_threads": torch.get_num_threads(),
      "rounds": rounds, "steps_per_round": steps,
      "jax_images_per_s": jax_speed, "torch_images_per_s": torch_speed,
      "ratio_jax_over_torch": round(
          jax_speed["median"] / torch_speed["median"], 3),
      "median_round_ratio": round(statistics.median(
          j / t for j, t in zip(speeds["jax"], speeds["torch"])), 3),
      "load_average_before": round(load_before, 2),
      "load_average_after": round(os.getloadavg()[0], 2)}


def main(argv):
  del argv
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    raise app.UsageError(
        "this benchmark needs PyTorch: pip install -e '.[bench]'.") from None
  workload = WORKLOADS[_MODEL.value]
  for dtype in _DTYPES.value:
    if dtype not in ("float32", "bfloat16"):
      raise app.UsageError(
          f"--dtypes has {dtype!r}; use float32 and/or bfloat16.")
    row = compare(_MODEL.value, dtype, _BATCH.value or workload.batch_size,
                  _STEPS.value or workload.steps, _ROUNDS.value,
                  _WARMUP.value)
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
  app.run(main)
