r"""Streaming input against in-memory input: the engine's images per second.

The Fashion-MNIST CNN trained by :func:`jaxwm.train.fit` on the
Fashion-MNIST training set held in device memory (the default feed), and
on the same examples written to ArrayRecord
(:func:`jaxwm.data.streaming.write_array_record`) and streamed with
``tfds.data_source``: read on the host at the epoch permutation's
positions, a few batches ahead, and sent to the devices. The two are
timed in alternation in one process, ``--rounds`` times each; each round
trains two epochs and times the second (compilation excluded). One JSON
line with the medians, their ratio, and the median of each round's ratio:

  LD_PRELOAD=libtcmalloc_minimal.so.4 \
      python -m benchmarks.streaming_throughput --rounds=3

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
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Timed rounds of each input.")
_EXAMPLES = flags.DEFINE_integer("num_examples", 60000,
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
    rates = {"in_memory": [], "streaming": []}
    for _ in range(_ROUNDS.value):
      rates["in_memory"].append(
          _second_epoch_images_per_second(memory, step_fn, state))
      rates["streaming"].append(_second_epoch_images_per_second(
          stream, step_fn, state, prefetch=_PREFETCH.value))
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
      "in_memory_images_per_s": round(medians["in_memory"], 1),
      "streaming_images_per_s": round(medians["streaming"], 1),
      "ratio_streaming_over_in_memory": round(
          medians["streaming"] / medians["in_memory"], 3),
      # Each round's streamed epoch over the in-memory epoch just before
      # it: pairs runs close in time, so slow drifts of the machine cancel.
      "median_ratio_per_round": round(statistics.median(
          s / m for s, m in zip(rates["streaming"], rates["in_memory"])), 3),
      "rounds": {name: [round(v, 1) for v in values]
                 for name, values in rates.items()}}), flush=True)


if __name__ == "__main__":
  app.run(main)
