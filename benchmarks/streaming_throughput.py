r"""Streaming input against in-memory input: the engine's images per second.

The Fashion-MNIST CNN trained by :func:`jaxwm.train.fit` on the
Fashion-MNIST training set held in device memory (the default feed), and
on the same examples written to ArrayRecord
(:func:`jaxwm.data.streaming.write_array_record`) and streamed with
``tfds.data_source``: read on the host at the epoch permutation's
positions, a few batches ahead, and sent to the devices. A third arm
feeds the in-memory examples through the same host feed as the stream
(``feed="host"``), which tells the feed's cost from the reading's. The
arms are timed in alternation in one process (order reversed every other
round), ``--rounds`` times each; each round trains two epochs of each and
times the second (compilation excluded). A shared VM's speed drifts by
10-20% within minutes, so the defaults take many short rounds and the
figure to read is the median of the per-round ratios (each arm's epoch
over the in-memory epoch of the same round). One JSON line:

  LD_PRELOAD=libtcmalloc_minimal.so.4 python -m benchmarks.streaming_throughput

(tcmalloc, as the README runs its demo; without the prefix, glibc's
malloc; the JSON line's ``malloc`` says which allocator ran.)

Needs ``pip install jaxwm[tfds]``; the ArrayRecord copy goes to a temporary
folder unless ``--data_dir`` names one (reused when it holds the copy).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time

import jax
import ml_collections
import numpy as np
from absl import app, flags

from jaxwm import data as jaxwm_data
from jaxwm import host_memory
from jaxwm import train
from jaxwm.data import streaming
from jaxwm.models import get_model

_BATCH = flags.DEFINE_integer("batch_size", 128, "Global batch size.")
_ROUNDS = flags.DEFINE_integer("rounds", 15, "Timed rounds of each input.")
_EXAMPLES = flags.DEFINE_integer("num_examples", 12800,
                                 "Training examples used (from the start).")
_PREFETCH = flags.DEFINE_integer("prefetch", 2, "Batches read ahead.")
_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                "TFDS folder for the ArrayRecord copy.")

NAME = "fashion_mnist_array_record"
OPTIMIZER = ml_collections.ConfigDict(dict(
    optimizer="sgd", learning_rate=0.05, schedule="constant", momentum=0.9,
    nesterov=True, weight_decay=5e-4))


def _second_epoch_images_per_second(data, step_fn, initial_state,
                                    **fit_kw) -> float:
  """Trains two epochs; images per second of the second one."""
  ends = []

  def mark_end(epoch, state):
    del epoch
    jax.block_until_ready(state.params)
    ends.append(time.perf_counter())

  # Host (numpy) arrays: fit copies them to the devices, so the step's
  # donation never consumes them.
  train.fit(step_fn, initial_state, data, batch_size=_BATCH.value, num_epochs=2,
            data_rng=jax.random.PRNGKey(1), log_every_steps=10**9,
            progress_bar=False, on_epoch_end=mark_end, **fit_kw)
  return (len(data) // _BATCH.value) * _BATCH.value / (ends[1] - ends[0])


def _median_ratio(rates: dict[str, list[float]], name: str) -> float:
  """The median over rounds of ``name``'s rate over the in-memory rate of
  the same round: pairs runs close in time, so the VM's drifts cancel."""
  return round(statistics.median(
      arm / memory for arm, memory in zip(rates[name], rates["in_memory"])),
               3)


def main(argv):
  del argv
  memory = jaxwm_data.load("fashion_mnist", "train").take(
      np.arange(_EXAMPLES.value))
  data_dir = _DATA_DIR.value or tempfile.mkdtemp(prefix="jaxwm_stream_")
  try:
    if not os.path.isdir(os.path.join(data_dir, NAME)):
      streaming.write_array_record({"train": memory}, NAME, data_dir)
    stream = streaming.from_tfds(NAME, "train", data_dir)
    model = get_model("cnn", memory.num_classes)
    optimizer = train.make_optimizer(OPTIMIZER, 1, 1)
    state = jax.device_get(train.create_train_state(
        model, optimizer, memory.image_shape, jax.random.PRNGKey(0)))
    step_fn = train.make_train_step(model, optimizer)
    arms = {
        "in_memory": lambda: _second_epoch_images_per_second(
            memory, step_fn, state),
        "in_memory_host_feed": lambda: _second_epoch_images_per_second(
            memory, step_fn, state, feed="host", prefetch=_PREFETCH.value),
        "streaming": lambda: _second_epoch_images_per_second(
            stream, step_fn, state, prefetch=_PREFETCH.value)}
    rates = {name: [] for name in arms}
    for round_index in range(_ROUNDS.value):
      order = list(arms) if round_index % 2 == 0 else list(arms)[::-1]
      for name in order:
        rates[name].append(arms[name]())
  finally:
    if not _DATA_DIR.value:
      shutil.rmtree(data_dir, ignore_errors=True)
  medians = {name: statistics.median(values)
             for name, values in rates.items()}
  print(json.dumps({
      "benchmark": "streaming_throughput", "model": "cnn",
      "dataset": "fashion_mnist", "examples": len(memory),
      "batch_size": _BATCH.value, "prefetch": _PREFETCH.value,
      "device": jax.devices()[0].device_kind,
      "devices": jax.device_count(), "jax_version": jax.__version__,
      "malloc": host_memory.allocator_name(),
      **{f"{name}_images_per_s": round(median, 1)
         for name, median in medians.items()},
      **{f"median_ratio_per_round_{name}": _median_ratio(rates, name)
         for name in ("streaming", "in_memory_host_feed")},
      "ratio_of_medians_streaming": round(
          medians["streaming"] / medians["in_memory"], 3),
      "rounds": {name: [round(v, 1) for v in values]
                 for name, values in rates.items()}}), flush=True)


if __name__ == "__main__":
  app.run(main)
