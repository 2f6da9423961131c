r"""Crafting throughput: the jaxwm alignment step beside a PyTorch reference.

One crafting step on a batch of B perturbed samples evaluates the gradient
of the training loss on aug(x + delta) with respect to all parameters,
the alignment objective 1 - cos(T, g) against a fixed target gradient T,
and its derivative in delta (a double backward), then a signed-Adam update
and the projection (Fowl et al., Eq. 3 and Algorithm 1). The jaxwm side
times the real :func:`jaxwm.alignment.crafting.make_craft_step` with the data
on the device and, on the same batch, the engine's training step
(:func:`jaxwm.train.make_train_step`, same augmentation), so each row also
gives the cost of crafting relative to training, and the same objective's
derivative taken by reverse-over-reverse ``jax.grad`` (the double backward
that the crafting step replaces by a forward-over-reverse product). The PyTorch side is the
same objective written as a strong PyTorch user would: ``channels_last``,
``torch.autograd.grad(..., create_graph=True)``, ``torch.autocast`` for
bf16, the target gradient precomputed, Adam on sign(grad), in-place
projection. Warm-up steps are excluded. One JSON line per (batch, dtype):

  python -m benchmarks.craft_throughput --model=resnet18 \
      --batch_sizes=128,512 --dtypes=float32,bfloat16
  python -m benchmarks.craft_throughput --model=cnn --image_shape=28,28,1 \
      --batch_sizes=128 --dtypes=float32 --torch=false   # CPU check

Synthetic inputs: this measures speed only, never attack success.
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags

from jaxwm import alignment
from jaxwm import train
from jaxwm.data.augment import AugmentConfig
from jaxwm.models import get_model

_MODEL = flags.DEFINE_string("model", "resnet18", "jaxwm model name.")
_SHAPE = flags.DEFINE_list("image_shape", ["32", "32", "3"], "H,W,C.")
_BATCHES = flags.DEFINE_list("batch_sizes", ["128", "512"],
                             "Poisons per step.")
_DTYPES = flags.DEFINE_list("dtypes", ["float32", "bfloat16"],
                            "Compute dtypes to time.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed warm-up steps.")
_TORCH = flags.DEFINE_bool("torch", True,
                           "Also time the PyTorch reference (needs torch and "
                           "a ResNet-18).")

NUM_CLASSES = 10
EPSILON = 8 / 255
AUGMENT = AugmentConfig(shift=2, flip=True)
OPTIMIZER = ml_collections.ConfigDict(dict(
    optimizer="sgd", learning_rate=0.1, schedule="constant", momentum=0.9,
    nesterov=False, weight_decay=5e-4))


def _timed(run, steps: int, warmup: int, wait=jax.block_until_ready) -> float:
  """Seconds per call of ``run()``; ``wait(output)`` blocks until it is done."""
  for _ in range(warmup):
    out = run()
  wait(out)
  start = time.perf_counter()
  for _ in range(steps):
    out = run()
  wait(out)
  return (time.perf_counter() - start) / steps


def jax_seconds_per_step(model_name: str, shape: tuple[int, int, int],
                         batch_size: int, dtype: str, steps: int,
                         warmup: int) -> tuple[float, float]:
  """Seconds on one batch of ``batch_size``: (crafting step, the objective's
  derivative by reverse-over-reverse autodiff, training step)."""
  model = get_model(model_name, NUM_CLASSES, dtype=dtype)
  mesh = train.make_mesh()
  optimizer = train.make_optimizer(OPTIMIZER, 1, 1)
  state = train.replicate(train.create_train_state(
      model, optimizer, shape, jax.random.PRNGKey(0)), mesh)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (batch_size, *shape), dtype=np.uint8)
  labels = rng.integers(0, NUM_CLASSES, batch_size).astype(np.int32)
  variables = state.variables()
  target = alignment.make_target(model, images, labels,
                                 alignment.reverse_cross_entropy,
                                 batch_size=batch_size, mesh=mesh)
  target_grad = target(variables["params"], state.model_state)
  config = alignment.CraftConfig(epsilon=EPSILON, steps=steps + warmup,
                                restarts=1, batch_size=batch_size,
                                augment=AUGMENT)
  craft_step = alignment.make_craft_step(model, config, mesh)
  spread = alignment.stacked_batch_sharding(mesh)
  batched = jax.device_put((images[None], labels[None],
                            np.ones((1, batch_size), np.float32)), spread)
  delta = jax.device_put(jnp.zeros(batched[0].shape), spread)
  holder = {"carry": (delta, alignment.initial_optimizer_state(delta))}
  key = jax.random.PRNGKey(1)
  index, learning_rate = jnp.int32(0), jnp.float32(0.025)

  def craft_once():
    holder["carry"], objective = craft_step(
        holder["carry"], index, learning_rate, variables, target_grad,
        *batched, key)
    return objective

  craft_s = _timed(craft_once, steps, warmup)
  double_backward_s = _jax_double_backward_seconds(
      model, variables, target_grad, images, labels, steps, warmup)
  train_step = train.make_train_step(model, optimizer,
                                     input_transform=AUGMENT.apply, mesh=mesh)
  batch = jax.device_put({"image": images, "label": labels},
                         train.batch_sharded(mesh))
  holder["state"] = state

  def train_once():
    holder["state"], metrics = train_step(holder["state"], batch, key)
    return metrics

  return craft_s, double_backward_s, _timed(train_once, steps, warmup)


def _jax_double_backward_seconds(model, variables, target_grad, images,
                                 labels, steps: int, warmup: int) -> float:
  """The same objective's derivative by reverse-over-reverse ``jax.grad``
  (what jaxwm replaced by a forward-over-reverse product), for comparison."""
  weights = jnp.ones(labels.shape[0])
  key = jax.random.PRNGKey(1)

  def objective(delta, clean):
    grad = alignment.loss_gradient(model, variables,
                                   AUGMENT.apply(clean + delta, key),
                                   labels, weights)
    return alignment.alignment_loss(grad, target_grad)

  derivative = jax.jit(jax.grad(objective))
  clean = jnp.asarray(images, jnp.float32) / 255
  holder = {"delta": jnp.zeros_like(clean)}

  def once():
    # Chained through delta, so calls run one after another.
    holder["delta"] = holder["delta"] + 1e-9 * derivative(holder["delta"],
                                                          clean)
    return holder["delta"]

  return _timed(once, steps, warmup)


def torch_seconds_per_step(batch_size: int, dtype: str, steps: int,
                           warmup: int) -> float:
  """Seconds per crafting step of the PyTorch reference (ResNet-18)."""
  import torch  # pylint: disable=g-import-not-at-top
  from benchmarks import torch_resnet  # pylint: disable=g-import-not-at-top

  device, model = torch_resnet.reference_setup(NUM_CLASSES)
  model.eval()
  params = [p for p in model.parameters() if p.requires_grad]
  autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                            enabled=dtype == "bfloat16")
  images = torch.rand(batch_size, 3, 32, 32, device=device
                      ).contiguous(memory_format=torch.channels_last)
  labels = torch.randint(0, NUM_CLASSES, (batch_size,), device=device)
  with autocast:
    probs = torch.softmax(model((images - 0.5) / 0.25).float(), dim=1)
  p_y = probs.gather(1, labels[:, None]).squeeze(1)
  target = torch.autograd.grad(-torch.log1p(-p_y).mean(), params)
  target = [t.detach() for t in target]
  target_norm = torch.sqrt(sum((t * t).sum() for t in target))
  delta = torch.zeros_like(images, requires_grad=True)
  optimizer = torch.optim.Adam([delta], lr=0.025)
  loss_fn = torch.nn.CrossEntropyLoss()
  pad = 2

  def augment(x):
    shifts = torch.randint(-pad, pad + 1, (2,)).tolist()
    x = torch.roll(torch.nn.functional.pad(x, (pad,) * 4), shifts, (2, 3))
    x = x[:, :, pad:-pad, pad:-pad]
    return torch.where(torch.rand(x.shape[0], 1, 1, 1, device=device) < 0.5,
                       x.flip(3), x)

  def step():
    optimizer.zero_grad(set_to_none=True)
    with autocast:
      out = model((augment(images + delta) - 0.5) / 0.25)
      loss = loss_fn(out.float(), labels)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    dot = sum((g * t).sum() for g, t in zip(grads, target))
    norm = torch.sqrt(sum((g * g).sum() for g in grads))
    objective = 1 - dot / (norm * target_norm)
    delta.grad, = torch.autograd.grad(objective, delta)
    delta.grad.sign_()
    optimizer.step()
    with torch.no_grad():
      delta.clamp_(-EPSILON, EPSILON)
      torch.maximum(torch.minimum(delta, 1 - images), -images, out=delta)
    return objective

  def wait(objective):
    del objective
    if device.type == "cuda":
      torch.cuda.synchronize()

  return _timed(step, steps, warmup, wait)


def _torch_version() -> str:
  import torch  # pylint: disable=g-import-not-at-top
  return torch.__version__


def main(argv):
  del argv
  if _TORCH.value:
    try:
      _torch_version()
    except ImportError:
      raise app.UsageError(
          "--torch needs PyTorch: pip install -e '.[bench]', or pass "
          "--torch=false to time the JAX side alone.") from None
    if _MODEL.value != "resnet18" or tuple(_SHAPE.value) != ("32", "32", "3"):
      raise app.UsageError("the PyTorch reference is a ResNet-18 on 32x32x3; "
                           "pass --torch=false for other models or shapes.")
  shape = tuple(int(s) for s in _SHAPE.value)
  for batch_size in (int(b) for b in _BATCHES.value):
    for dtype in _DTYPES.value:
      craft_s, double_backward_s, train_s = jax_seconds_per_step(
          _MODEL.value, shape, batch_size, dtype, _STEPS.value, _WARMUP.value)
      row = {"benchmark": "craft_throughput", "model": _MODEL.value,
             "input": "x".join(map(str, shape)), "batch_size": batch_size,
             "dtype": dtype, "device": jax.devices()[0].device_kind,
             "num_devices": jax.device_count(),
             "jax_version": jax.__version__,
             "jax_poisons_per_s": round(batch_size / craft_s, 1),
             "jax_double_backward_poisons_per_s": round(
                 batch_size / double_backward_s, 1),
             "jax_train_images_per_s": round(batch_size / train_s, 1),
             "craft_over_train_step": round(craft_s / train_s, 3)}
      if _TORCH.value:
        torch_s = torch_seconds_per_step(batch_size, dtype, _STEPS.value,
                                         _WARMUP.value)
        row["torch_version"] = _torch_version()
        row["torch_poisons_per_s"] = round(batch_size / torch_s, 1)
        row["ratio_jax_over_torch"] = round(torch_s / craft_s, 3)
      print(json.dumps(row), flush=True)


if __name__ == "__main__":
  app.run(main)
