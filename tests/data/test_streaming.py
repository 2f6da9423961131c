"""Streaming datasets: ArrayRecord and mock TFDS sources, the host feed,
and watermarks kept as an index-keyed overlay."""

import sys
from concurrent import futures
from types import SimpleNamespace

import jax
import ml_collections
import numpy as np
import pytest

from jaxwm import train
from jaxwm.data import load, streaming
from jaxwm.models import get_model
from jaxwm.poison import poisoned_label

import tiny

tfds = pytest.importorskip("tensorflow_datasets")

NAME = "fashion_mnist_array_record"
OPTIMIZER = ml_collections.ConfigDict(dict(
    optimizer="sgd", learning_rate=0.05, schedule="constant", momentum=0.9,
    nesterov=False, weight_decay=0.0))


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
  """(in-memory train split, the same examples streamed from ArrayRecord)."""
  memory = load("fashion_mnist", "train").take(np.arange(192))
  test = load("fashion_mnist", "test").take(np.arange(16))
  data_dir = tmp_path_factory.mktemp("tfds")
  streaming.write_array_record({"train": memory, "test": test}, NAME,
                               data_dir)
  return memory, streaming.from_tfds(NAME, "train", data_dir)


def _fit(data, epochs=2, **kw):
  model = get_model("cnn", 10, width=4, dense_width=16)
  optimizer = train.make_optimizer(OPTIMIZER, len(data) // 32, epochs)
  state = train.create_train_state(model, optimizer, (28, 28, 1),
                                   jax.random.PRNGKey(0))
  initial = jax.device_get(state.params)
  trained = train.fit(train.make_train_step(model, optimizer), state, data,
                      batch_size=32, num_epochs=epochs,
                      data_rng=jax.random.PRNGKey(1), progress_bar=False,
                      **kw)
  return initial, jax.device_get(trained.params)


def _max_abs_diff(a, b):
  return max(jax.tree.leaves(jax.tree.map(
      lambda x, y: float(np.max(np.abs(x - y))), a, b)))


def test_array_record_reads_back_the_examples(fashion):
  memory, stream = fashion
  assert len(stream) == 192 and stream.image_shape == (28, 28, 1)
  assert stream.class_names == memory.class_names
  rows = np.array([191, 0, 77, 77, 5])
  images, labels = stream.read(rows)
  np.testing.assert_array_equal(images, memory.images[rows])
  np.testing.assert_array_equal(labels, memory.labels[rows])
  np.testing.assert_array_equal(stream.labels, memory.labels)
  assert stream.identity()["source"] == {
      "tfds": f"{NAME}/1.0.0", "split": "train", "examples": 192}
  with pytest.raises(IndexError, match=r"in \[0, 192\), got 0..192"):
    stream.read([0, 192])


def test_raw_image_records_decode_a_batch_at_once(fashion):
  memory, stream = fashion
  # write_array_record's format is read without tfds's per-example decoding.
  assert isinstance(stream.source, streaming.RawImageRecords)
  rows = [3, 150, 3]
  images, labels = stream.source.read_batch(rows)
  np.testing.assert_array_equal(images, memory.images[rows])
  np.testing.assert_array_equal(labels, memory.labels[rows])
  assert images.flags.writeable  # overlays write into a batch
  wrong = streaming.RawImageRecords(stream.source.records, (28, 28, 3))
  with pytest.raises(ValueError, match=r"example 3 holds an image of 784 "
                     r"bytes, expected 2352"):
    wrong.read_batch(rows)


def test_a_split_slice_reads_its_own_examples(fashion, tmp_path):
  memory, _ = fashion
  data_dir = tmp_path / "tfds"
  streaming.write_array_record({"train": memory}, NAME, data_dir)
  part = streaming.from_tfds(NAME, "train[5:150]", data_dir)
  assert len(part) == 145
  rows = np.array([144, 0, 60])
  images, labels = part.read(rows)
  np.testing.assert_array_equal(images, memory.images[rows + 5])
  np.testing.assert_array_equal(labels, memory.labels[rows + 5])


def test_array_record_shards_map_split_indices_across_files(tmp_path):
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  instructions = []
  for name, count, skip, take in (("a", 5, 1, 3), ("b", 6, 2, 4)):
    path = str(tmp_path / name)
    writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
    for k in range(count):
      writer.write(f"{name}{k}".encode())
    writer.close()
    instructions.append(SimpleNamespace(filename=path, skip=skip, take=take))
  shards = streaming.ArrayRecordShards(instructions)
  # The split is a1 a2 a3 b2 b3 b4 b5.
  assert len(shards) == 7
  assert shards.__getitems__([6, 0, 3, 2, 3]) == [
      b"b5", b"a1", b"b2", b"a3", b"b2"]
  with pytest.raises(IndexError, match=r"in \[0, 7\), got 0..7"):
    shards.__getitems__([0, 7])


def test_array_record_shards_read_right_from_several_threads(fashion):
  # A reader seeks, then reads: two threads sharing it must not interleave.
  memory, stream = fashion
  rng = np.random.default_rng(0)
  batches = [rng.integers(0, len(memory), 64) for _ in range(400)]
  orders = [list(range(400)), list(reversed(range(400)))]

  def read_all(order):
    return [stream.read(batches[k])[0] for k in order]

  switch_interval = sys.getswitchinterval()
  sys.setswitchinterval(1e-6)  # threads take turns between seek and read
  try:
    with futures.ThreadPoolExecutor(max_workers=2) as pool:
      results = list(pool.map(read_all, orders))
  finally:
    sys.setswitchinterval(switch_interval)
  for images, order in zip(results, orders):
    for got, k in zip(images, order):
      np.testing.assert_array_equal(got, memory.images[batches[k]])


class _CountingSource:
  """Ten 2x2 grey images whose pixels are their index; counts reads."""

  def __init__(self, batched: bool):
    self.single_reads, self.batch_reads = 0, 0
    if batched:
      self.__getitems__ = self._getitems

  def __len__(self):
    return 10

  def __getitem__(self, index):
    self.single_reads += 1
    return {"image": np.full((2, 2), index, np.uint8), "label": index % 3}

  def _getitems(self, indices):
    self.batch_reads += 1
    return [{"image": np.full((2, 2), i, np.uint8), "label": i % 3}
            for i in indices]


@pytest.mark.parametrize("batched", [True, False])
def test_a_batch_is_one_read_where_the_source_has_batch_reads(batched):
  source = _CountingSource(batched)
  images, labels = streaming.read_examples(source, np.array([7, 2, 5]), "c")
  assert images.shape == (3, 2, 2, 1) and images[:, 0, 0, 0].tolist() == [
      7, 2, 5]
  assert labels.tolist() == [1, 2, 2]
  assert (source.batch_reads, source.single_reads) == (
      (1, 0) if batched else (0, 3))


def test_streaming_fit_equals_the_in_memory_fit(fashion):
  memory, stream = fashion
  initial, in_memory = _fit(memory)
  _, streamed = _fit(stream, prefetch=3)
  assert _max_abs_diff(in_memory, streamed) <= 1e-6
  assert _max_abs_diff(in_memory, initial) > 1e-3
  with pytest.raises(ValueError, match="read on the host"):
    _fit(stream, feed="device")


def test_mock_tfds_data_streams_like_its_copy_in_memory():
  with tiny.mock_tfds(64):
    stream = streaming.from_tfds("mnist", "train")
    memory = stream.materialize()
    assert memory.images.shape == (64, 28, 28, 1)
    _, in_memory = _fit(memory, epochs=1)
    _, streamed = _fit(stream, epochs=1, prefetch=0)
  assert _max_abs_diff(in_memory, streamed) <= 1e-6


def test_overlay_replaces_only_its_examples(fashion):
  memory, stream = fashion
  white = np.full((2, 28, 28, 1), 255, np.uint8)
  changed = stream.with_examples(np.array([9, 3]), white, np.array([1, 2]))
  changed = changed.with_examples(np.array([3]), white[:1] * 0, np.array([7]))
  assert changed.overlay.indices.tolist() == [3, 9]
  images, labels = changed.read(np.array([3, 4, 9]))
  assert labels.tolist() == [7, memory.labels[4], 1]
  assert images[0].max() == 0 and images[2].min() == 255
  np.testing.assert_array_equal(images[1], memory.images[4])
  assert stream.overlay is None  # the original is unchanged
  assert changed.identity()["overlay"] != stream.identity()["overlay"]
  with pytest.raises(ValueError, match="M distinct indices"):
    stream.with_examples(np.array([1, 1]), white, np.array([0, 0]))


@pytest.mark.parametrize("method", ["ubw_p", "wanet"])
def test_mark_keeps_only_the_marked_examples(fashion, method):
  memory, stream = fashion
  config = {"method": method, "poison_rate": 0.05}
  key = jax.random.PRNGKey(3)
  marked, memory_key = poisoned_label.mark(memory, config, key)
  streamed, stream_key = poisoned_label.mark(stream, config, key)
  np.testing.assert_array_equal(memory_key.poisoned_indices,
                                stream_key.poisoned_indices)
  changed = np.union1d(stream_key.poisoned_indices, stream_key.noise_indices)
  assert streamed.overlay.indices.tolist() == changed.tolist()
  assert streamed.source is stream.source
  images, labels = streamed.read(np.arange(len(stream)))
  np.testing.assert_array_equal(images, marked.images)
  np.testing.assert_array_equal(labels, marked.labels)
