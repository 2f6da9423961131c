r"""Training throughput: the jaxwm engine's step beside a PyTorch reference.

ResNet-18 (CIFAR stem) on 32x32x3 inputs, SGD with momentum, fp32 and bf16.
The jaxwm side times the real ``jaxwm.train.make_train_step`` step with the
data already on the device; the PyTorch side is written the way a strong
PyTorch user would: a CIFAR ResNet-18 in the torchvision style,
``channels_last``, ``torch.autocast`` for bf16, fused SGD, data on the device.
Warm-up steps are excluded from both timings. One JSON line per dtype:

  python -m benchmarks.train_throughput --batch_size=512 --steps=50

Synthetic inputs are used: this measures speed only, never accuracy.
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags

from jaxwm import train
from jaxwm.models import get_model

_BATCH = flags.DEFINE_integer("batch_size", 512, "Global batch size.")
_STEPS = flags.DEFINE_integer("steps", 50, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 5, "Untimed warm-up steps.")
_DTYPES = flags.DEFINE_list("dtypes", ["float32", "bfloat16"],
                            "Compute dtypes to time.")
_TORCH = flags.DEFINE_bool("torch", True, "Also time the PyTorch reference.")

NUM_CLASSES = 10
SHAPE = (32, 32, 3)
OPTIMIZER = ml_collections.ConfigDict(dict(
    optimizer="sgd", learning_rate=0.1, schedule="constant", momentum=0.9,
    nesterov=False, weight_decay=5e-4))


def jax_images_per_second(dtype: str, batch_size: int, steps: int,
                          warmup: int) -> float:
  """Images per second of the jaxwm training step (state donated)."""
  model = get_model("resnet18", NUM_CLASSES, dtype=dtype)
  optimizer = train.make_optimizer(OPTIMIZER, 1, 1)
  mesh = train.make_mesh()
  state = train.replicate(train.create_train_state(
      model, optimizer, SHAPE, jax.random.PRNGKey(0)), mesh)
  step = train.make_train_step(model, optimizer, mesh=mesh)
  rng = np.random.default_rng(0)
  batch = jax.device_put({
      "image": rng.integers(0, 256, (batch_size, *SHAPE), dtype=np.uint8),
      "label": rng.integers(0, NUM_CLASSES, batch_size).astype(np.int32)},
                         train.batch_sharded(mesh))
  key = jax.random.PRNGKey(1)
  for _ in range(warmup):
    state, metrics = step(state, batch, key)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, batch, key)
  jax.block_until_ready(metrics)
  return steps * batch_size / (time.perf_counter() - start)


def torch_images_per_second(dtype: str, batch_size: int, steps: int,
                            warmup: int) -> float:
  """Images per second of the PyTorch reference training step."""
  import torch  # pylint: disable=g-import-not-at-top
  from benchmarks import torch_resnet  # pylint: disable=g-import-not-at-top

  device, model = torch_resnet.reference_setup(NUM_CLASSES)
  optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9,
                              weight_decay=5e-4,
                              fused=device.type == "cuda")
  images = torch.rand(batch_size, SHAPE[2], *SHAPE[:2], device=device
                      ).contiguous(memory_format=torch.channels_last)
  labels = torch.randint(0, NUM_CLASSES, (batch_size,), device=device)
  autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                            enabled=dtype == "bfloat16")
  loss_fn = torch.nn.CrossEntropyLoss()

  def step():
    optimizer.zero_grad(set_to_none=True)
    with autocast:
      loss = loss_fn(model(images), labels)
    loss.backward()
    optimizer.step()
    return loss

  def sync():
    if device.type == "cuda":
      torch.cuda.synchronize()

  model.train()
  for _ in range(warmup):
    step()
  sync()
  start = time.perf_counter()
  for _ in range(steps):
    step()
  sync()
  return steps * batch_size / (time.perf_counter() - start)


def main(argv):
  del argv
  for dtype in _DTYPES.value:
    args = (dtype, _BATCH.value, _STEPS.value, _WARMUP.value)
    row = {"benchmark": "train_throughput", "model": "resnet18",
           "input": "32x32x3", "batch_size": _BATCH.value, "dtype": dtype,
           "device": jax.devices()[0].device_kind,
           "jax_version": jax.__version__,
           "jax_images_per_s": round(jax_images_per_second(*args), 1)}
    if _TORCH.value:
      import torch  # pylint: disable=g-import-not-at-top
      row["torch_version"] = torch.__version__
      row["torch_images_per_s"] = round(torch_images_per_second(*args), 1)
      row["ratio_jax_over_torch"] = round(
          row["jax_images_per_s"] / row["torch_images_per_s"], 3)
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
  app.run(main)
