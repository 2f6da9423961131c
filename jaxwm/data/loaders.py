"""Loading real image classification data into a :class:`Dataset` by name.

``load(name, split, data_dir=None)`` understands these names:

========================  ==================================================
``digits``                scikit-learn's 1,797 8x8 grey digits; bundled with
                          scikit-learn, split 80/20 (see below).
``fashion_mnist``         Fashion-MNIST IDX files (60,000 train / 10,000
                          test, 28x28 grey), by default from
                          :data:`FASHION_MNIST_DIR` (Debian package
                          ``dataset-fashion-mnist``) or from ``data_dir``.
``npz:PATH``              one ``.npz`` file holding both splits (see
                          :func:`load_npz`).
``folder:PATH``           one sub-folder of images per class (see
                          :func:`load_folder`).
``tfds:NAME``             any TensorFlow Datasets image dataset such as
                          ``cifar10`` or ``svhn_cropped``, through
                          ``tfds.data_source`` (no TensorFlow needed;
                          ``pip install jaxwm[tfds]``); ``data_dir`` is the
                          TFDS data directory.
========================  ==================================================

Datasets without their own test split (``digits``, and ``folder:PATH`` without
``train``/``test`` sub-folders) are split with
``disjoint_split(dataset, TRAIN_FRACTION, SPLIT_SEED)``: 80% of every class
(rounded) for training, the rest for testing, the same on every machine.
"""

from __future__ import annotations

import functools
import os

import numpy as np
from PIL import Image

from jaxwm import safe_npz
from jaxwm.data import idx
from jaxwm.data import streaming
from jaxwm.data.dataset import check_same_task
from jaxwm.data.dataset import Dataset
from jaxwm.data.splits import disjoint_split

SPLITS = ("train", "test")
TRAIN_FRACTION = 0.8
SPLIT_SEED = 0

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FASHION_MNIST_PREFIXES = {"train": "train", "test": "t10k"}

VALID_NAMES = ("digits", "fashion_mnist", "npz:PATH", "folder:PATH",
               "tfds:NAME")


def load(name: str, split: str,
         data_dir: str | os.PathLike | None = None) -> Dataset:
  """Loads split ``split`` of the dataset called ``name``.

  Args:
    name: one of :data:`VALID_NAMES` (see the module docstring).
    split: ``"train"`` or ``"test"``.
    data_dir: the data directory for ``fashion_mnist`` and ``tfds:NAME``;
      must be None for the other names (their location is in the name, or
      they are bundled).

  Returns:
    The validated Dataset (uint8 NHWC images, int32 labels, class names).

  Raises:
    ValueError: an unknown name or split (the message lists the valid ones).
    FileNotFoundError: missing data (the message says how to get it).
  """
  _check_split(split)
  if name == "fashion_mnist":
    return load_fashion_mnist(split, data_dir)
  kind, _, argument = name.partition(":")
  if kind == "tfds" and argument:
    return load_tfds(argument, split, data_dir)
  if name != "digits" and not (kind in ("npz", "folder") and argument):
    raise ValueError(
        f"unknown dataset name {name!r}; valid names are "
        f"{', '.join(VALID_NAMES)}.")
  if data_dir is not None:
    raise ValueError(
        f"dataset {name!r} takes no data_dir (got {os.fspath(data_dir)!r}); "
        "put the path in the name or leave data_dir=None.")
  if name == "digits":
    return load_digits(split)
  return (load_npz if kind == "npz" else load_folder)(argument, split)


def load_splits(name: str, data_dir: str | os.PathLike | None = None
                ) -> tuple[Dataset, Dataset]:
  """(train, test) of the dataset called ``name`` (see :func:`load`).

  Raises:
    ValueError: besides :func:`load`'s errors, when the two splits differ
      in image shape or classes (the message names both).
  """
  train, test = load(name, "train", data_dir), load(name, "test", data_dir)
  check_same_task(train, test, name)
  return train, test


def _check_split(split: str) -> None:
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")


def _stratified_split(dataset: Dataset, split: str) -> Dataset:
  """The ``split`` part of the fixed 80/20 stratified split of ``dataset``."""
  train, test = disjoint_split(dataset, TRAIN_FRACTION, SPLIT_SEED)
  return train if split == "train" else test


@functools.lru_cache(maxsize=1)
def _all_digits() -> Dataset:
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  bunch = datasets.load_digits()
  # Pixel values are counts 0..16; 255 / 16 maps them onto 0..255.
  images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
  return Dataset(
      images=images[..., None],
      labels=bunch.target.astype(np.int32),
      num_classes=len(bunch.target_names),
      class_names=tuple(str(n) for n in bunch.target_names),
      name="digits")


def load_digits(split: str) -> Dataset:
  """scikit-learn digits: [N, 8, 8, 1] uint8, 10 classes, fixed 80/20 split.

  Args:
    split: ``"train"`` (1,438 images) or ``"test"`` (359 images).
  """
  _check_split(split)
  return _stratified_split(_all_digits(), split)


def load_fashion_mnist(split: str,
                       data_dir: str | os.PathLike | None = None) -> Dataset:
  """Fashion-MNIST from its IDX (or IDX.gz) files.

  The parsed arrays are cached for the life of the process (several
  experiments load the same split) and returned read-only; ``Dataset.take``
  and ``replace`` give writable copies.

  Args:
    split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
    data_dir: folder with ``train-images-idx3-ubyte[.gz]``,
      ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]`` and
      ``t10k-labels-idx1-ubyte[.gz]``; default :data:`FASHION_MNIST_DIR`.

  Returns:
    Dataset of [N, 28, 28, 1] uint8 images, 10 named classes.

  Raises:
    FileNotFoundError: the folder or one of its files is missing.
    idx.IdxFormatError: a file is truncated or corrupt (named in the message).
  """
  _check_split(split)
  directory = os.path.realpath(
      FASHION_MNIST_DIR if data_dir is None else os.fspath(data_dir))
  images, labels = _fashion_mnist_arrays(directory, split)
  return Dataset(images=images[..., None], labels=labels, num_classes=10,
                 class_names=FASHION_MNIST_CLASSES, name="fashion_mnist")


@functools.lru_cache(maxsize=None)
def _fashion_mnist_arrays(directory: str,
                          split: str) -> tuple[np.ndarray, np.ndarray]:
  """Read-only (images uint8 [N, 28, 28], labels int32 [N]) of one split."""
  if not os.path.isdir(directory):
    raise FileNotFoundError(
        f"Fashion-MNIST directory {directory} does not exist; install the "
        "data with `apt-get install -y dataset-fashion-mnist` (it goes to "
        f"{FASHION_MNIST_DIR}) or pass data_dir=<folder holding the "
        "train-/t10k- images-idx3-ubyte and labels-idx1-ubyte files, "
        "optionally .gz>.")
  prefix = _FASHION_MNIST_PREFIXES[split]
  images, labels = idx.read_images_and_labels(
      _find_idx_file(directory, f"{prefix}-images-idx3-ubyte"),
      _find_idx_file(directory, f"{prefix}-labels-idx1-ubyte"))
  labels = labels.astype(np.int32)
  labels.flags.writeable = False
  return images, labels


def _find_idx_file(directory: str, stem: str) -> str:
  for file_name in (stem, stem + ".gz"):
    path = os.path.join(directory, file_name)
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(
      f"neither {stem} nor {stem}.gz is in {directory}; reinstall with "
      "`apt-get install --reinstall -y dataset-fashion-mnist` or pass a "
      "data_dir that holds all four Fashion-MNIST files.")


def load_npz(path: str | os.PathLike, split: str) -> Dataset:
  """A dataset stored as one ``.npz`` file holding all its splits.

  The file holds, for each split S (``train``, ``test``, ...), the arrays
  ``S_images`` (uint8 [N, H, W, C], or [N, H, W] for grey images) and
  ``S_labels`` (integers [N]), and optionally ``class_names`` (a string array
  [K], shared by all splits). Write one with, e.g.,
  ``np.savez(path, train_images=..., train_labels=..., test_images=...,
  test_labels=..., class_names=np.array(names))``. It is read with
  ``allow_pickle=False``, so it cannot run code.

  Args:
    path: the ``.npz`` file.
    split: the split S to return.

  Returns:
    Dataset named after the file; K = len(class_names) when present, else
    1 + the largest label over all the splits in the file, so that every
    split has the same classes.
  """
  path = os.fspath(path)
  images, labels, class_names = _read_npz(path, split)
  if images.ndim == 3:
    images = images[..., None]
  return _named_dataset(
      path, images=images, labels=labels, num_classes=len(class_names),
      class_names=class_names, name=_stem(path))


def _read_npz(path: str,
              split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
  """(images, labels, class names) of ``split`` from the layout of load_npz."""
  images_key, labels_key = f"{split}_images", f"{split}_labels"
  arrays = safe_npz.read_npz(
      path, path, lambda key: key in (images_key, "class_names") or
      key.endswith("_labels"))
  if images_key not in arrays or labels_key not in arrays:
    splits = sorted(key[:-len("_labels")] for key in arrays
                    if key.endswith("_labels"))
    raise ValueError(
        f"{path} has no arrays {images_key!r} and {labels_key!r} (its splits "
        f"are {splits}); store each split S as S_images and S_labels.")
  if "class_names" in arrays:
    class_names = tuple(str(n) for n in arrays["class_names"])
  else:
    largest = max(int(arrays[key].max(initial=0)) for key in arrays
                  if key.endswith("_labels"))
    class_names = tuple(str(k) for k in range(largest + 1))
  return arrays[images_key], arrays[labels_key], class_names


def _named_dataset(source: str, **fields) -> Dataset:
  """Dataset(**fields), with ``source`` prefixed to any validation error."""
  try:
    return Dataset(**fields)
  except (TypeError, ValueError) as e:
    raise type(e)(f"{source}: {e}") from e


def _stem(path: str) -> str:
  return os.path.splitext(os.path.basename(os.path.normpath(path)))[0]


def load_folder(root: str | os.PathLike, split: str,
                image_size: tuple[int, int] | None = None) -> Dataset:
  """Images stored as one sub-folder per class.

  Layouts: ``root/train/<class>/*`` and ``root/test/<class>/*`` when both
  ``root/train`` and ``root/test`` exist; otherwise ``root/<class>/*``, split
  80/20 per class as described in the module docstring. The class names are
  the sorted sub-folder names (of ``root/train`` in the first layout), their
  position the label. Files are read in sorted order with Pillow, skipping
  names without an image extension. All images get the first image's colour
  mode (grey if it is grey, else RGB; alpha is dropped) and are resized
  bilinearly to ``image_size`` or to the first image's size.

  Args:
    root: the top folder.
    split: ``"train"`` or ``"test"``.
    image_size: (H, W) to resize every image to; None keeps the first
      image's size.

  Returns:
    Dataset of [N, H, W, 1 or 3] uint8 images, named after ``root``.
  """
  _check_split(split)
  root = os.fspath(root)
  if not os.path.isdir(root):
    raise FileNotFoundError(f"image folder {root} does not exist.")
  split_dirs = [os.path.join(root, s) for s in SPLITS]
  if all(os.path.isdir(d) for d in split_dirs):
    class_names = _subfolders(split_dirs[0])
    return _read_class_folders(
        os.path.join(root, split), class_names, image_size, _stem(root))
  dataset = _read_class_folders(
      root, _subfolders(root), image_size, _stem(root))
  return _stratified_split(dataset, split)


def _subfolders(directory: str) -> tuple[str, ...]:
  return tuple(sorted(
      entry.name for entry in os.scandir(directory)
      if entry.is_dir() and not entry.name.startswith(".")))


def _read_class_folders(directory: str, class_names: tuple[str, ...],
                        image_size: tuple[int, int] | None,
                        name: str) -> Dataset:
  """Reads ``directory/<class>/*`` for the given classes into a Dataset."""
  unknown = sorted(set(_subfolders(directory)) - set(class_names))
  if unknown:
    raise ValueError(
        f"{directory} has class folders {unknown} that are not among the "
        f"training classes {list(class_names)}; rename or remove them.")
  paths, labels = [], []
  for label, class_name in enumerate(class_names):
    class_dir = os.path.join(directory, class_name)
    files = sorted(os.listdir(class_dir)) if os.path.isdir(class_dir) else []
    for file_name in files:
      if _is_image_file(file_name):
        paths.append(os.path.join(class_dir, file_name))
        labels.append(label)
  if len(class_names) < 2 or not paths:
    raise ValueError(
        f"{directory} must hold at least two class sub-folders with images; "
        f"found classes {list(class_names)} and {len(paths)} images.")
  images = _read_images(paths, image_size)
  return _named_dataset(
      directory, images=images, labels=np.asarray(labels, np.int32),
      num_classes=len(class_names), class_names=class_names, name=name)


def _is_image_file(file_name: str) -> bool:
  extension = os.path.splitext(file_name)[1].lower()
  return not file_name.startswith(".") and (
      extension in Image.registered_extensions())


def _read_images(paths: list[str],
                 image_size: tuple[int, int] | None) -> np.ndarray:
  """uint8 [len(paths), H, W, C]: the first image fixes mode and size."""
  with Image.open(paths[0]) as first:
    mode = "L" if first.getbands()[0] in ("1", "L", "I", "F") else "RGB"
    height, width = image_size or (first.height, first.width)
  images = np.empty((len(paths), height, width, 1 if mode == "L" else 3),
                    np.uint8)
  for i, path in enumerate(paths):
    with Image.open(path) as image:
      image = image.convert(mode)
      if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
      images[i] = np.asarray(image, np.uint8).reshape(images.shape[1:])
  return images


def load_tfds(name: str, split: str,
              data_dir: str | os.PathLike | None = None) -> Dataset:
  """A TensorFlow Datasets image dataset, read into host memory.

  The whole split of :func:`jaxwm.data.streaming.from_tfds` (read with
  ``tfds.data_source``, no TensorFlow needed); for datasets too large for
  memory, train on that :class:`~jaxwm.data.streaming.StreamingDataset`
  instead.

  Args:
    name: the TFDS name, e.g. ``"cifar10"``, ``"svhn_cropped"`` or
      ``"imagenet_resized/32x32"``; it needs features ``image`` (equal
      shapes) and ``label`` (a ClassLabel).
    split: any TFDS split string, e.g. ``"train"``, ``"test"``,
      ``"train[:10%]"``.
    data_dir: the TFDS data directory; None uses TFDS's default.

  Returns:
    Dataset of uint8 [N, H, W, C] images, int32 labels and the ClassLabel's
    names, named ``name``.
  """
  return streaming.from_tfds(name, split, data_dir).materialize()
