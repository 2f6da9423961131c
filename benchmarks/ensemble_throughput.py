r"""Ensembles against one model after another: total images per second.

E small CNNs (the false-acceptance experiment's: width 8, each on its own
stratified 10% of Fashion-MNIST) trained by :func:`jaxwm.train.fit`
sequentially, and at once as an ensemble with each strategy of
:mod:`jaxwm.train.ensemble` (``vmap``, ``map``), timed in alternation in
one process. Each run trains two epochs and times the second (compilation
excluded). One JSON line with the medians over ``--rounds``, the speed-up of
each strategy over sequential training and the strategy ``"auto"`` picks on
this backend:

  python -m benchmarks.ensemble_throughput --members=8 --rounds=3
"""

from __future__ import annotations

import json
import statistics
import time

import jax
import ml_collections
import numpy as np
from absl import app, flags

from jaxwm import data as jaxwm_data
from jaxwm import train
from jaxwm.models import get_model
from jaxwm.train import ensemble

_MEMBERS = flags.DEFINE_integer("members", 8, "Models trained, E.")
_WIDTH = flags.DEFINE_integer("width", 8, "CNN width.")
_FRACTION = flags.DEFINE_float("fraction", 0.1, "Each model's data share.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size per model.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Timed rounds of each way.")
_STRATEGIES = flags.DEFINE_list("strategies", list(ensemble.STRATEGIES),
                                "Ensemble strategies to time.")

OPTIMIZER = ml_collections.ConfigDict(dict(
    optimizer="sgd", learning_rate=0.05, schedule="constant", momentum=0.9,
    nesterov=True, weight_decay=5e-4))


def _second_epoch_seconds(step_fn, state, data, data_rng, **fit_kw) -> float:
  """Trains two epochs; the seconds of the second one."""
  ends = []

  def mark_end(epoch, trained):
    del epoch
    jax.block_until_ready(trained.params)
    ends.append(time.perf_counter())

  train.fit(step_fn, state, data, batch_size=_BATCH.value, num_epochs=2,
            data_rng=data_rng, log_every_steps=10**9, progress_bar=False,
            on_epoch_end=mark_end, **fit_kw)
  return ends[1] - ends[0]


def main(argv):
  del argv
  data = jaxwm_data.load("fashion_mnist", "train")
  members = _MEMBERS.value
  rows = np.stack([jaxwm_data.stratified_indices(data.labels, _FRACTION.value,
                                                 seed)
                   for seed in range(members)])
  model = get_model("cnn", data.num_classes, width=_WIDTH.value)
  optimizer = train.make_optimizer(OPTIMIZER, 1, 1)
  # Host copies: fit sends them to the devices, donation never reaches them.
  states = [jax.device_get(train.create_train_state(
      model, optimizer, data.image_shape, jax.random.PRNGKey(seed)))
            for seed in range(members)]
  data_keys = [jax.random.PRNGKey(100 + seed) for seed in range(members)]
  stacked = jax.device_get(ensemble.stack(states))
  subsets = [data.take(member_rows) for member_rows in rows]
  alone_step = train.make_train_step(model, optimizer)
  steps = {name: train.make_train_step(model, optimizer, ensemble=name,
                                       members=members)
           for name in _STRATEGIES.value}
  seconds = {"sequential": [], **{name: [] for name in steps}}
  for _ in range(_ROUNDS.value):
    seconds["sequential"].append(sum(
        _second_epoch_seconds(alone_step, state, subset, key)
        for state, subset, key in zip(states, subsets, data_keys)))
    for name, step_fn in steps.items():
      seconds[name].append(_second_epoch_seconds(
          step_fn, stacked, data, ensemble.stack(data_keys), members=rows))
  images = members * (rows.shape[1] // _BATCH.value) * _BATCH.value
  rates = {name: images / statistics.median(values)
           for name, values in seconds.items()}
  print(json.dumps({
      "benchmark": "ensemble_throughput", "model": f"cnn width {_WIDTH.value}",
      "members": members, "examples_per_member": int(rows.shape[1]),
      "batch_size": _BATCH.value, "device": jax.devices()[0].device_kind,
      "devices": jax.device_count(), "jax_version": jax.__version__,
      "auto_strategy": ensemble.choose_strategy(),
      "images_per_s": {name: round(rate, 1) for name, rate in rates.items()},
      "speedup_over_sequential": {
          name: round(rates[name] / rates["sequential"], 3)
          for name in steps},
      "rounds_seconds": {name: [round(v, 2) for v in values]
                         for name, values in seconds.items()}}), flush=True)


if __name__ == "__main__":
  app.run(main)
