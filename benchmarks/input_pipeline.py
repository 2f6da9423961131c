r"""Is training bound by compute or by input? Times the parts of one step.

For the Fashion-MNIST CNN recipe (batch 128, shift + flip augmentation) this
times, over the same number of steps:

* ``input``: the on-device batch gather of :func:`jaxwm.train.fit` alone;
* ``step``: the compiled training step alone on a fixed batch (augmentation
  included, as it runs inside the step);
* ``fit``: the real loop, gather and step together;

and, for reference, the same gather written in PyTorch (``index_select`` on a
tensor already in memory). ``input_share`` = input / fit. Synthetic images of
Fashion-MNIST's shape are used: this measures speed only.

  python -m benchmarks.input_pipeline --steps=100
"""

from __future__ import annotations

import json
import time

import jax
import numpy as np
from absl import app, flags

from configs import train as train_config
from jaxwm import data as jaxwm_data
from jaxwm import train
from jaxwm.train import loop, recipe

_STEPS = flags.DEFINE_integer("steps", 100, "Timed steps.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Global batch size.")


def _timed(fn, steps: int) -> float:
  out = fn(0)
  jax.block_until_ready(out)
  start = time.perf_counter()
  for index in range(steps):
    out = fn(index)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / steps


def main(argv):
  del argv
  steps, batch_size = _STEPS.value, _BATCH.value
  config = train_config.get_config("fashion_mnist,cnn")
  data = jaxwm_data.synthetic(batch_size * (steps + 1), (28, 28, 1), 10, 0)
  mesh = train.make_mesh()
  model = recipe.build_model(config, data.num_classes)
  optimizer = train.make_optimizer(config.train, steps, 1)
  state = train.replicate(train.create_train_state(
      model, optimizer, data.image_shape, jax.random.PRNGKey(0)), mesh)
  step = train.make_train_step(
      model, optimizer, mesh=mesh,
      input_transform=recipe.input_transform_from_config(config.train.augment))
  batcher = loop._device_batcher(  # pylint: disable=protected-access
      data.images, data.labels, batch_size, mesh, None)
  perm = jax.device_put(np.arange(len(data), dtype=np.int32),
                        train.replicated(mesh))
  key = jax.random.PRNGKey(1)
  fixed, _ = batcher(perm, 0, key, 0)
  holder = {"state": state}

  def step_only(index):
    holder["state"], metrics = step(holder["state"], fixed, key)
    return metrics

  def fit_like(index):
    batch, step_key = batcher(perm, index, key, index)
    holder["state"], metrics = step(holder["state"], batch, step_key)
    return metrics

  input_s = _timed(lambda i: batcher(perm, i, key, i), steps)
  step_s = _timed(step_only, steps)
  fit_s = _timed(fit_like, steps)

  import torch  # pylint: disable=g-import-not-at-top
  images = torch.from_numpy(np.asarray(data.images))
  order = torch.randperm(len(data))
  torch_input_s = _timed(
      lambda i: images.index_select(0, order[i * batch_size:(i + 1) *
                                             batch_size]), steps)
  print(json.dumps({
      "benchmark": "input_pipeline", "model": "cnn", "batch_size": batch_size,
      "device": jax.devices()[0].device_kind,
      "jax_input_ms": round(1e3 * input_s, 3),
      "jax_step_ms": round(1e3 * step_s, 3),
      "jax_fit_ms": round(1e3 * fit_s, 3),
      "input_share": round(input_s / fit_s, 4),
      "torch_input_ms": round(1e3 * torch_input_s, 3),
      "ratio_jax_over_torch_input_speed": round(torch_input_s / input_s, 3),
      "throughput": round(batch_size / fit_s, 1)}))


if __name__ == "__main__":
  app.run(main)
