"""Datasets read example by example, for data that does not fit in memory.

A :class:`StreamingDataset` wraps a random-access source (``len(source)``,
``source[i] -> {"image", "label"}``), typically ``tfds.data_source`` over
the ArrayRecord files of a prepared TFDS dataset, which needs no
TensorFlow. :func:`jaxwm.train.fit` trains on it by reading, on each
process, only its share of each global batch (the rows of
:func:`jaxwm.train.sharding.process_batch_rows`) at the positions of the
epoch's index permutation, and prefetches the next batches to the devices
while the current step runs. The in-memory :class:`~jaxwm.data.Dataset`
stays the default for data that fits.

Watermarks that change a fraction of a dataset change a streaming dataset
through an index-keyed overlay (:meth:`StreamingDataset.with_examples`):
only the changed examples are stored, and reads at their indices return
them instead of the source's.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from jaxwm.data.dataset import Dataset
from jaxwm.fingerprint import array_digest


class Source(Protocol):
  """A random-access example source, e.g. ``tfds.data_source(...)``."""

  def __len__(self) -> int: ...

  def __getitem__(self, index: int) -> Mapping[str, Any]: ...


@dataclasses.dataclass(frozen=True)
class Overlay:
  """Examples that replace those of a source at some indices.

  Attributes:
    indices: int64 [M], sorted, distinct.
    images: uint8 [M, H, W, C], the replacing images.
    labels: int32 [M], the replacing labels.
  """

  indices: np.ndarray
  images: np.ndarray
  labels: np.ndarray

  def merged(self, indices: np.ndarray, images: np.ndarray,
             labels: np.ndarray) -> "Overlay":
    """This overlay with the given examples added (they win on overlap)."""
    keep = ~np.isin(self.indices, indices)
    order = np.argsort(np.concatenate([self.indices[keep], indices]),
                       kind="stable")
    return Overlay(
        np.concatenate([self.indices[keep], indices])[order],
        np.concatenate([self.images[keep], images])[order],
        np.concatenate([self.labels[keep], labels])[order])

  def apply(self, rows: np.ndarray, images: np.ndarray,
            labels: np.ndarray) -> None:
    """Replaces, in place, the examples read at ``rows`` that it holds."""
    if not self.indices.size:
      return
    positions = np.minimum(np.searchsorted(self.indices, rows),
                           self.indices.size - 1)
    hit = self.indices[positions] == rows
    images[hit] = self.images[positions[hit]]
    labels[hit] = self.labels[positions[hit]]


def _as_nhwc(image: Any) -> np.ndarray:
  image = np.asarray(image)
  return image[..., None] if image.ndim == 2 else image


class ArrayRecordShards:
  """The records of a TFDS split's ArrayRecord files, by index in the split.

  Reads a batch's records one by one on the calling thread (``seek`` and
  ``read`` of ``array_record``'s ``ArrayRecordReader``), mapping the
  split's indices to files with one vectorised search. The reader's own
  many-index ``read`` hands the records to its thread pool: about 64
  context switches a batch of 128, which on a few cores take them from the
  training step; ``tfds.data_source``'s ``__getitems__`` does the same and
  also bisects the files in Python for every index. A lock makes the
  readers' seek-then-read safe when several threads read.

  Args:
    file_instructions: the split's files in order, each with ``filename``,
      ``skip`` (records before the split's first in that file) and
      ``take`` (the split's records in it), as
      ``DatasetInfo.splits[split].file_instructions`` gives them.
  """

  def __init__(self, file_instructions: Sequence[Any]):
    from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
    # Both options 0 tune the readers for random access; with the default
    # parallelism a read after a seek goes through the thread pool and
    # the Fashion-MNIST CNN's streamed epoch ran 5x slower.
    self._readers = [
        array_record_module.ArrayRecordReader(
            os.fspath(instruction.filename),
            options="readahead_buffer_size:0,max_parallelism:0",
            file_reader_buffer_size=4096)
        for instruction in file_instructions]
    self._lock = threading.Lock()
    takes = np.array([i.take for i in file_instructions], np.int64)
    self._ends = np.cumsum(takes)
    # Index in the split -> position in its file: index + offset.
    self._offsets = (np.array([i.skip for i in file_instructions], np.int64)
                     - (self._ends - takes))

  def __len__(self) -> int:
    return int(self._ends[-1]) if self._ends.size else 0

  def __getitems__(self, indices: Sequence[int]) -> list[bytes]:
    """The serialised records at ``indices`` (ints in [0, len)), in order.

    Raises:
      IndexError: an index outside [0, len).
    """
    indices = np.asarray(indices, np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
      raise IndexError(f"record indices must be in [0, {len(self)}), got "
                       f"{int(indices.min())}..{int(indices.max())}.")
    files = np.searchsorted(self._ends, indices, side="right")
    positions = indices + self._offsets[files]
    records = []
    with self._lock:
      for file, position in zip(files.tolist(), positions.tolist()):
        reader = self._readers[file]
        reader.seek(position)
        records.append(reader.read())
    return records


@functools.cache
def _example_batch_type():
  """The message class of ``message ExampleBatch { repeated
  tensorflow.Example examples = 1; }``, built in a private descriptor
  pool: a batch of serialised ``tf.train.Example`` records parses as one
  message (one protobuf arena) once each record is written as field 1."""
  from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.proto import tf_example_pb2  # pylint: disable=g-import-not-at-top
  pool = descriptor_pool.DescriptorPool()

  def add(file_descriptor):
    for dependency in file_descriptor.dependencies:
      add(dependency)
    proto = descriptor_pb2.FileDescriptorProto()
    file_descriptor.CopyToProto(proto)
    pool.Add(proto)

  example = tf_example_pb2.Example.DESCRIPTOR
  add(example.file)
  batch_file = descriptor_pb2.FileDescriptorProto(
      name="jaxwm/example_batch.proto", package="jaxwm", syntax="proto3",
      dependency=[example.file.name])
  batch_file.message_type.add(name="ExampleBatch").field.add(
      name="examples", number=1,
      type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
      label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
      type_name=f".{example.full_name}")
  pool.Add(batch_file)
  return message_factory.GetMessageClass(
      pool.FindMessageTypeByName("jaxwm.ExampleBatch"))


@dataclasses.dataclass(frozen=True)
class RawImageRecords:
  """A TFDS ArrayRecord split whose images are stored as raw bytes (as
  :func:`write_array_record` stores them), decoded a batch at a time.

  ``tfds.data_source`` decodes each record through its feature tree in
  Python (about 40 us a record, most of a batch's host time); a record
  here holds two fields, so :meth:`read_batch` parses a batch's records
  with the protobuf parser, as one message (:func:`_example_batch_type`),
  and joins their image bytes into one array. One message a batch rather
  than one a record also keeps protobuf from trimming glibc's heap:
  its Python extension calls ``malloc_trim`` every 10,000 frees of its
  arenas (one arena a message), which returns the training step's freed
  scratch memory to the kernel and costs the next steps page faults:
  24,011 ``madvise`` calls over three streamed epochs of 20,000
  Fashion-MNIST images parsed a record at a time, 21 parsed a batch at a
  time (``strace -f -c``).

  Attributes:
    records: the serialised ``tf.train.Example`` of each example, by index
      (``len`` and ``__getitems__``): :class:`ArrayRecordShards`, or
      ``tfds.data_source(..., deserialize_method=RAW_BYTES)``.
    image_shape: (H, W, C) of every image.
  """

  records: Any
  image_shape: tuple[int, int, int]

  def __len__(self) -> int:
    return len(self.records)

  def __getitem__(self, index: int) -> dict[str, Any]:
    images, labels = self.read_batch([index])
    return {"image": images[0], "label": labels[0]}

  def read_batch(self, indices: Sequence[int]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [n, H, W, C] images, int32 [n] labels) at ``indices``.

    Raises:
      ValueError: a record's image is not H * W * C bytes.
    """
    from tensorflow_datasets.proto import tf_feature_pb2  # pylint: disable=g-import-not-at-top
    # A BytesList of the records serialises exactly as the batch message.
    serialised = tf_feature_pb2.BytesList(
        value=self.records.__getitems__(list(indices))).SerializeToString()
    fields = [example.features.feature for example in
              _example_batch_type().FromString(serialised).examples]
    images = [field["image"].bytes_list.value[0] for field in fields]
    size = int(np.prod(self.image_shape))
    wrong = [(index, len(image)) for index, image in zip(indices, images)
             if len(image) != size]
    if wrong:
      raise ValueError(
          f"example {wrong[0][0]} holds an image of {wrong[0][1]} bytes, "
          f"expected {size} (uint8 {self.image_shape}); the files do not "
          "match their features.json, write them again.")
    return (np.frombuffer(bytearray(b"".join(images)), np.uint8).reshape(
        (len(fields),) + self.image_shape),
            np.array([field["label"].int64_list.value[0] for field in fields],
                     np.int32))


def read_examples(source: Source, indices: Sequence[int] | np.ndarray,
                  description: str) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 [n, H, W, C] images, int32 [n] labels) at ``indices``.

  A source with ``read_batch`` (:class:`RawImageRecords`) returns the
  arrays itself; one with ``__getitems__`` (``tfds.data_source`` has it)
  is read in one call per batch, several times faster than example by
  example.

  Raises:
    ValueError: the images differ in shape or are not uint8 (the message
      names the example and ``description``).
  """
  indices = [int(index) for index in np.asarray(indices, np.int64)]
  read_batch = getattr(source, "read_batch", None)
  if read_batch is not None:
    return read_batch(indices)
  read_many = getattr(source, "__getitems__", None)
  examples = (read_many(indices) if read_many is not None
              else [source[index] for index in indices])
  images, labels = None, np.empty(len(indices), np.int32)
  for row, (index, example) in enumerate(zip(indices, examples)):
    image = _as_nhwc(example["image"])
    if images is None:
      images = np.empty((len(indices),) + image.shape, np.uint8)
    if image.shape != images.shape[1:] or image.dtype != np.uint8:
      raise ValueError(
          f"{description}: example {index} has a {image.dtype} image of "
          f"shape {image.shape}, expected uint8 {images.shape[1:]}; use a "
          "variant with equal sizes (e.g. imagenet_resized/32x32).")
    images[row] = image
    labels[row] = example["label"]
  return images, labels


@dataclasses.dataclass(frozen=True)
class StreamingDataset:
  """An image classification dataset read from a source on demand.

  Attributes:
    source: the random-access source (:class:`Source`).
    num_classes: K.
    class_names: K names, one per class.
    name: a short identifier.
    source_identity: what identifies the source's content (e.g. the TFDS
      name, version and split), kept in checkpoint identity records; the
      examples themselves are not hashed.
    overlay: examples replacing the source's at some indices, or None.
  """

  source: Source
  num_classes: int
  class_names: tuple[str, ...] = ()
  name: str = "dataset"
  source_identity: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  overlay: Overlay | None = None

  def __post_init__(self):
    if len(self.source) == 0:
      raise ValueError(f"{self.name}: the source holds no example.")
    names = tuple(str(n) for n in self.class_names) or tuple(
        str(k) for k in range(int(self.num_classes)))
    if len(names) != int(self.num_classes) or len(names) < 2:
      raise ValueError(
          f"{self.name}: {len(names)} class names for num_classes="
          f"{self.num_classes}; give at least two classes, one name each.")
    object.__setattr__(self, "class_names", names)
    object.__setattr__(self, "num_classes", int(self.num_classes))

  def __len__(self) -> int:
    return len(self.source)

  @functools.cached_property
  def image_shape(self) -> tuple[int, int, int]:
    """(H, W, C), from the first example."""
    return tuple(self.read(np.zeros(1, np.int64))[0].shape[1:])

  @functools.cached_property
  def labels(self) -> np.ndarray:
    """int32 [N], every label; the first use reads the whole source once
    (the images are dropped as they are read)."""
    chunks = np.array_split(np.arange(len(self)),
                            max(1, len(self) // 1024))
    return np.concatenate([self.read(chunk)[1] for chunk in chunks])

  def read(self, indices: Sequence[int] | np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [n, H, W, C] images, int32 [n] labels) at ``indices``.

    Raises:
      IndexError: an index outside [0, N).
      ValueError: a label outside [0, K) or images of another shape.
    """
    indices = np.asarray(indices, np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
      raise IndexError(
          f"{self.name}: indices must be in [0, {len(self)}), got "
          f"{int(indices.min())}..{int(indices.max())}.")
    images, labels = read_examples(self.source, indices, self.name)
    if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
      raise ValueError(
          f"{self.name}: a label is outside [0, {self.num_classes}); pass "
          "the source's number of classes.")
    if self.overlay is not None:
      self.overlay.apply(indices, images, labels)
    return images, labels

  def with_examples(self, indices: np.ndarray, images: np.ndarray,
                    labels: np.ndarray) -> "StreamingDataset":
    """This dataset with the examples at ``indices`` replaced.

    Only the given examples are stored (an :class:`Overlay`); the source is
    read as before everywhere else.

    Args:
      indices: int [M], distinct, in [0, N).
      images: uint8 [M, H, W, C].
      labels: int [M] in [0, K).
    """
    indices = np.asarray(indices, np.int64)
    images, labels = np.asarray(images), np.asarray(labels, np.int32)
    if (np.unique(indices).size != indices.size or
        images.shape != (indices.size,) + self.image_shape or
        images.dtype != np.uint8 or labels.shape != indices.shape):
      raise ValueError(
          f"{self.name}: with_examples takes M distinct indices, uint8 "
          f"images [M, *{self.image_shape}] and labels [M]; got "
          f"{indices.size} indices ({np.unique(indices).size} distinct), "
          f"{images.dtype} images {images.shape}, labels {labels.shape}.")
    order = np.argsort(indices)
    empty = Overlay(np.zeros(0, np.int64),
                    np.zeros((0,) + self.image_shape, np.uint8),
                    np.zeros(0, np.int32))
    overlay = (self.overlay or empty).merged(indices[order], images[order],
                                             labels[order])
    return dataclasses.replace(self, overlay=overlay)

  def identity(self, labels: np.ndarray | None = None) -> dict[str, Any]:
    """``{"examples", "num_classes", "source", "overlay", "labels"}``: what
    identifies the data (the overlay and ``labels``, training targets
    replacing the source's, by SHA-256; None when absent)."""
    overlay = None if self.overlay is None else {
        name: array_digest(getattr(self.overlay, name))
        for name in ("indices", "images", "labels")}
    return {"examples": len(self), "num_classes": self.num_classes,
            "source": dict(self.source_identity), "overlay": overlay,
            "labels": None if labels is None else array_digest(labels)}

  def materialize(self) -> Dataset:
    """The whole dataset in memory, as a :class:`Dataset`."""
    images, labels = self.read(np.arange(len(self)))
    return Dataset(images=images, labels=labels,
                   num_classes=self.num_classes,
                   class_names=self.class_names, name=self.name)


def _tfds():
  """The tensorflow_datasets module, or an ImportError saying what to
  install."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        "reading and writing TFDS datasets needs tensorflow-datasets and "
        "array_record; install them with `pip install jaxwm[tfds]`.") from e
  return tfds


def write_array_record(splits: Mapping[str, Dataset], name: str,
                       data_dir: str | os.PathLike,
                       version: str = "1.0.0") -> None:
  """Stores in-memory splits as a TFDS dataset of ArrayRecord files.

  :func:`from_tfds` (``name``, a split, ``data_dir``) then streams them, in
  their order here. Images are stored as their raw bytes (a uint8 tensor
  feature with ``Encoding.BYTES``, not upcast to one int64 per pixel), so
  neither writing nor reading needs TensorFlow or an image codec, and a
  read decodes an image with one copy.

  Args:
    splits: split name -> Dataset; all of one image shape and classes.
    name: the TFDS name to store them under, e.g. ``"fashion_mnist_ar"``.
    data_dir: the TFDS data directory to write into.
    version: the dataset version.

  Raises:
    ValueError: no split, or splits of different shapes or classes.
  """
  tfds = _tfds()
  datasets = list(splits.values())
  if not datasets or any(
      d.image_shape != datasets[0].image_shape or
      d.class_names != datasets[0].class_names for d in datasets):
    shapes = {split: (d.image_shape, d.num_classes)
              for split, d in splits.items()}
    raise ValueError(
        "write_array_record needs at least one split, all of one image "
        f"shape and classes; got (shape, classes) {shapes}.")
  first = datasets[0]

  class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version(version)

    def _info(self):
      return tfds.core.DatasetInfo(
          builder=self, disable_shuffling=True,
          features=tfds.features.FeaturesDict({
              "image": tfds.features.Tensor(
                  shape=first.image_shape, dtype=np.uint8,
                  encoding=tfds.features.Encoding.BYTES),
              "label": tfds.features.ClassLabel(
                  names=list(first.class_names))}))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {split: self._generate_examples(dataset)
              for split, dataset in splits.items()}

    def _generate_examples(self, dataset):
      for index in range(len(dataset)):
        yield index, {"image": dataset.images[index],
                      "label": int(dataset.labels[index])}

  Builder.name = name
  Builder(data_dir=os.fspath(data_dir),
          file_format="array_record").download_and_prepare()


def _stores_raw_images(features) -> bool:
  """Whether the examples are a uint8 image of fixed shape stored as one
  bytes value and an int64 label (:func:`write_array_record`'s format)."""
  image = features["image"]
  if (set(features.keys()) != {"image", "label"} or
      type(image) is not _tfds().features.Tensor or  # pylint: disable=unidiomatic-typecheck
      np.dtype(image.np_dtype) != np.uint8 or None in image.shape):
    return False
  stored, label = (image.get_serialized_info(),
                   features["label"].get_serialized_info())
  return (stored.shape == () and np.dtype(stored.np_dtype).kind in "OSU" and
          label.shape == () and np.dtype(label.np_dtype) == np.int64)


def from_tfds(name: str, split: str,
              data_dir: str | os.PathLike | None = None) -> StreamingDataset:
  """A TFDS image classification dataset, read with ``tfds.data_source``.

  ``tfds.data_source`` reads the prepared ArrayRecord files without
  TensorFlow (preparing them first when needed and network access allows).
  A dataset stored as :func:`write_array_record` stores it (raw image
  bytes, an int64 label) is read through :class:`RawImageRecords`, a batch
  decoded at once; any other goes through tfds's own decoding.

  Args:
    name: the TFDS name, e.g. ``"cifar10"`` or ``"imagenet2012"``; it
      needs features ``image`` (uint8, equal shapes) and ``label`` (a
      ClassLabel).
    split: any TFDS split string, e.g. ``"train"`` or ``"train[:10%]"``.
    data_dir: the TFDS data directory; None uses TFDS's default.

  Raises:
    ImportError: tensorflow-datasets is not installed.
    ValueError: the dataset lacks those features or the split is empty.
  """
  data_dir = None if data_dir is None else os.fspath(data_dir)
  source = _tfds().data_source(name, split=split, data_dir=data_dir)
  info = source.dataset_info
  features = info.features
  missing = {"image", "label"} - set(features.keys())
  if missing:
    raise ValueError(
        f"tfds:{name} lacks the features {sorted(missing)} (it has "
        f"{sorted(features.keys())}); only image classification datasets "
        "with 'image' and 'label' features can be read.")
  if not len(source):
    raise ValueError(f"tfds:{name} split {split!r} is empty.")
  label_feature = features["label"]
  if _stores_raw_images(features):
    source = RawImageRecords(
        ArrayRecordShards(info.splits[split].file_instructions),
        tuple(features["image"].shape))
  return StreamingDataset(
      source, num_classes=label_feature.num_classes,
      class_names=tuple(label_feature.names), name=name,
      source_identity={"tfds": info.full_name, "split": split,
                       "examples": len(source)})
