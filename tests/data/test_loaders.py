"""Tests for jaxwm.data.loaders: every dataset name, offline."""

from __future__ import annotations

import gzip
import os
import struct
import sys

import numpy as np
import pytest
from PIL import Image

from jaxwm.data import idx
from jaxwm.data import load
from jaxwm.data import stratified_indices
from jaxwm.data import loaders

import tiny


def _sklearn_digits():
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  return datasets.load_digits()


# ----------------------------------------------------------------- digits


def test_digits_shapes_and_stratified_80_20_split():
  train, test = load("digits", "train"), load("digits", "test")
  assert train.images.shape == (1438, 8, 8, 1)
  assert test.images.shape == (359, 8, 8, 1)
  assert train.images.dtype == np.uint8 and train.labels.dtype == np.int32
  assert train.num_classes == 10 and train.class_names[3] == "3"
  per_class = np.bincount(_sklearn_digits().target)
  expected_train = np.round(0.8 * per_class).astype(int)
  np.testing.assert_array_equal(np.bincount(train.labels), expected_train)
  np.testing.assert_array_equal(np.bincount(test.labels),
                                per_class - expected_train)


def test_digits_pixels_are_scaled_from_0_16_to_0_255():
  flat = load("digits", "train").images.ravel()
  source = np.unique(_sklearn_digits().images)
  np.testing.assert_array_equal(source, np.arange(17))
  # round(v * 255 / 16): 0 -> 0, 1 -> 16, 8 -> 128, 15 -> 239, 16 -> 255.
  allowed = np.round(np.arange(17) * 255 / 16)
  assert set(np.unique(flat)) <= set(allowed)
  assert {0, 16, 128, 239, 255} <= set(np.unique(flat).tolist())


def test_digits_split_is_the_documented_seeded_partition():
  source = _sklearn_digits()
  scaled = np.round(source.images * 255 / 16).astype(np.uint8)[..., None]
  train_ids = stratified_indices(source.target, 0.8, seed=0)
  test_ids = np.setdiff1d(np.arange(1797), train_ids)
  for split, ids in (("train", train_ids), ("test", test_ids)):
    dataset = load("digits", split)
    np.testing.assert_array_equal(dataset.images, scaled[ids])
    np.testing.assert_array_equal(dataset.labels, source.target[ids])
    np.testing.assert_array_equal(load("digits", split).images,
                                  dataset.images)


def test_digits_takes_no_data_dir(tmp_path):
  with pytest.raises(ValueError, match=r"'digits' takes no data_dir"):
    load("digits", "train", data_dir=tmp_path)


# ---------------------------------------------------------- fashion_mnist


def _idx_file(path, magic: int, array: np.ndarray, compress: bool) -> None:
  data = struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes()
  path.write_bytes(gzip.compress(data) if compress else data)


def _fake_fashion_dir(root, num_train=6, num_test=4):
  rng = np.random.default_rng(0)
  for prefix, count in (("train", num_train), ("t10k", num_test)):
    images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    labels = (np.arange(count) % 10).astype(np.uint8)
    _idx_file(root / f"{prefix}-images-idx3-ubyte.gz", idx.IMAGES_MAGIC,
              images, compress=True)
    _idx_file(root / f"{prefix}-labels-idx1-ubyte", idx.LABELS_MAGIC, labels,
              compress=False)
  return root


def test_fashion_mnist_reads_plain_and_gz_files_from_data_dir(tmp_path):
  root = _fake_fashion_dir(tmp_path)
  train = load("fashion_mnist", "train", data_dir=root)
  test = load("fashion_mnist", "test", data_dir=str(root))
  assert train.images.shape == (6, 28, 28, 1)
  assert test.images.shape == (4, 28, 28, 1)
  np.testing.assert_array_equal(test.labels, [0, 1, 2, 3])
  assert train.class_names[0] == "T-shirt/top"
  assert train.class_names[9] == "Ankle boot"


def test_fashion_mnist_is_cached_and_read_only(tmp_path):
  root = _fake_fashion_dir(tmp_path)
  first = load("fashion_mnist", "train", data_dir=root)
  second = load("fashion_mnist", "train", data_dir=root)
  assert np.shares_memory(first.images, second.images)
  with pytest.raises(ValueError, match="read-only"):
    first.images[0, 0, 0, 0] = 1
  copy = first.take([0, 1])
  copy.images[0, 0, 0, 0] = 1  # take gives writable copies


def test_missing_fashion_mnist_directory_says_how_to_install(tmp_path):
  missing = tmp_path / "nowhere"
  with pytest.raises(FileNotFoundError) as error:
    load("fashion_mnist", "train", data_dir=missing)
  message = str(error.value)
  assert str(missing) in message
  assert "apt-get install -y dataset-fashion-mnist" in message
  assert "data_dir" in message


def test_missing_fashion_mnist_file_is_named(tmp_path):
  root = _fake_fashion_dir(tmp_path)
  os.remove(root / "t10k-labels-idx1-ubyte")
  with pytest.raises(FileNotFoundError,
                     match=r"neither t10k-labels-idx1-ubyte nor "
                     r"t10k-labels-idx1-ubyte.gz"):
    load("fashion_mnist", "test", data_dir=root)


def test_truncated_fashion_mnist_file_is_named(tmp_path):
  root = _fake_fashion_dir(tmp_path)
  path = root / "train-images-idx3-ubyte.gz"
  path.write_bytes(path.read_bytes()[:-20])
  with pytest.raises(idx.IdxFormatError,
                     match=r"train-images-idx3-ubyte.gz: corrupt or truncated"):
    load("fashion_mnist", "train", data_dir=root)


@pytest.mark.skipif(not os.path.isdir(loaders.FASHION_MNIST_DIR),
                    reason="apt-get install -y dataset-fashion-mnist")
def test_real_fashion_mnist_shapes_and_balance():
  train, test = load("fashion_mnist", "train"), load("fashion_mnist", "test")
  assert train.images.shape == (60000, 28, 28, 1)
  assert test.images.shape == (10000, 28, 28, 1)
  np.testing.assert_array_equal(np.bincount(train.labels), [6000] * 10)
  np.testing.assert_array_equal(np.bincount(test.labels), [1000] * 10)
  assert train.images.max() == 255


# -------------------------------------------------------------------- npz


def _write_npz(path, **arrays):
  np.savez(path, **arrays)
  return f"npz:{path}"


def test_npz_round_trip_with_class_names(tmp_path):
  rng = np.random.default_rng(0)
  train_images = rng.integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
  test_images = rng.integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
  name = _write_npz(
      tmp_path / "pets.npz", train_images=train_images,
      train_labels=np.array([0, 1, 2, 1, 0]), test_images=test_images,
      test_labels=np.array([2, 0]), class_names=np.array(["cat", "dog", "ox"]))
  train, test = load(name, "train"), load(name, "test")
  np.testing.assert_array_equal(train.images, train_images)
  np.testing.assert_array_equal(test.images, test_images)
  np.testing.assert_array_equal(test.labels, [2, 0])
  assert test.class_names == ("cat", "dog", "ox") and test.name == "pets"


def test_npz_grey_images_get_a_channel_and_shared_class_count(tmp_path):
  name = _write_npz(
      tmp_path / "grey.npz", train_images=np.zeros((3, 5, 5), np.uint8),
      train_labels=np.array([0, 3, 1]),
      test_images=np.full((2, 5, 5), 7, np.uint8),
      test_labels=np.array([1, 0]))
  test = load(name, "test")
  assert test.images.shape == (2, 5, 5, 1) and test.images.max() == 7
  # The largest label of any split (3, in train) fixes K = 4.
  assert test.num_classes == 4 and test.class_names == ("0", "1", "2", "3")


_GOOD_TRAIN = dict(train_images=np.zeros((2, 2, 2, 1), np.uint8),
                   train_labels=np.array([0, 1]))


@pytest.mark.parametrize("changes, split, error, match", [
    ({}, "test", ValueError,
     r"bad.npz has no arrays 'test_images' and 'test_labels' \(its splits "
     r"are \['train'\]\)"),
    ({"class_names": np.array(["a", None], dtype=object)}, "train",
     ValueError, r"bad.npz: array 'class_names' cannot be read as a plain "
     r"array.*string dtype"),
    ({"train_images": np.zeros((2, 2, 2, 1), np.float32)}, "train",
     TypeError, r"bad.npz: images must be uint8"),
])
def test_bad_npz_files_are_explained(tmp_path, changes, split, error, match):
  name = _write_npz(tmp_path / "bad.npz", **{**_GOOD_TRAIN, **changes})
  with pytest.raises(error, match=match):
    load(name, split)


def test_missing_npz_file(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"absent.npz does not exist"):
    load(f"npz:{tmp_path / 'absent.npz'}", "train")


# ----------------------------------------------------------------- folder


def _save_png(path, array: np.ndarray) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path)


def _grey(value: int, size=(4, 6)) -> np.ndarray:
  return np.full(size, value, np.uint8)


def test_folder_with_train_and_test_subfolders(tmp_path):
  for split, offset in (("train", 0), ("test", 100)):
    _save_png(tmp_path / split / "zebra" / "a.png", _grey(offset + 1))
    _save_png(tmp_path / split / "ant" / "b.png", _grey(offset + 2))
    _save_png(tmp_path / split / "ant" / "a.png", _grey(offset + 3))
  (tmp_path / "train" / "ant" / "notes.txt").write_text("not an image")
  train = load(f"folder:{tmp_path}", "train")
  test = load(f"folder:{tmp_path}", "test")
  assert train.class_names == ("ant", "zebra")
  assert train.images.shape == (3, 4, 6, 1)
  # Sorted classes, then sorted files: ant/a, ant/b, zebra/a.
  np.testing.assert_array_equal(train.images[:, 0, 0, 0], [3, 2, 1])
  np.testing.assert_array_equal(train.labels, [0, 0, 1])
  np.testing.assert_array_equal(test.images[:, 0, 0, 0], [103, 102, 101])


def test_folder_resizes_to_the_first_image_and_keeps_rgb(tmp_path):
  red = np.zeros((4, 4, 3), np.uint8)
  red[..., 0] = 200
  _save_png(tmp_path / "a" / "1.png", red)
  _save_png(tmp_path / "b" / "1.png", np.full((8, 8, 3), 50, np.uint8))
  for i in range(2, 6):
    _save_png(tmp_path / "a" / f"{i}.png", red)
    _save_png(tmp_path / "b" / f"{i}.png", _grey(9, (2, 2)))
  both = [load(f"folder:{tmp_path}", split) for split in ("train", "test")]
  images = np.concatenate([d.images for d in both])
  labels = np.concatenate([d.labels for d in both])
  assert images.shape == (10, 4, 4, 3)
  # Constant images stay constant when resized; grey becomes R = G = B.
  assert set(np.unique(images[labels == 1])) == {9, 50}
  np.testing.assert_array_equal(images[labels == 0][:, 0, 0], [[200, 0, 0]] * 5)


def test_folder_without_split_subfolders_is_split_80_20(tmp_path):
  for label, name in enumerate(("cats", "dogs")):
    for i in range(10):
      _save_png(tmp_path / name / f"{i:02d}.png", _grey(10 * label + i))
  train = load(f"folder:{tmp_path}", "train")
  test = load(f"folder:{tmp_path}", "test")
  np.testing.assert_array_equal(np.bincount(train.labels), [8, 8])
  np.testing.assert_array_equal(np.bincount(test.labels), [2, 2])
  ids = np.concatenate([train.images, test.images])[:, 0, 0, 0]
  np.testing.assert_array_equal(np.sort(ids), np.arange(20))
  np.testing.assert_array_equal(load(f"folder:{tmp_path}", "test").images,
                                test.images)


def test_folder_image_size_argument(tmp_path):
  for name in ("a", "b"):
    _save_png(tmp_path / "train" / name / "x.png", _grey(5, (10, 10)))
    _save_png(tmp_path / "test" / name / "x.png", _grey(6, (10, 10)))
  small = loaders.load_folder(tmp_path, "test", image_size=(3, 5))
  assert small.images.shape == (2, 3, 5, 1) and small.images.max() == 6


def test_folder_test_class_unknown_to_train_is_rejected(tmp_path):
  _save_png(tmp_path / "train" / "a" / "x.png", _grey(1))
  _save_png(tmp_path / "train" / "b" / "x.png", _grey(1))
  _save_png(tmp_path / "test" / "c" / "x.png", _grey(1))
  with pytest.raises(ValueError, match=r"class folders \['c'\] that are not "
                     r"among the training classes \['a', 'b'\]"):
    load(f"folder:{tmp_path}", "test")


def test_folder_without_images_is_rejected(tmp_path):
  (tmp_path / "a").mkdir()
  (tmp_path / "b").mkdir()
  with pytest.raises(ValueError, match=r"at least two class sub-folders with "
                     r"images; found classes \['a', 'b'\] and 0 images"):
    load(f"folder:{tmp_path}", "train")


# ------------------------------------------------------------ tfds, names


def test_tfds_mock_cifar10_converts_to_a_dataset():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tiny.mock_tfds(6):
    dataset = load("tfds:cifar10", "train")
    source = tfds.data_source("cifar10", split="train")
    expected_images = np.stack([source[i]["image"] for i in range(6)])
    expected_labels = [int(source[i]["label"]) for i in range(6)]
  assert dataset.images.shape == (6, 32, 32, 3)
  assert dataset.images.dtype == np.uint8 and dataset.labels.dtype == np.int32
  np.testing.assert_array_equal(dataset.images, expected_images)
  np.testing.assert_array_equal(dataset.labels, expected_labels)
  assert dataset.num_classes == 10 and len(dataset.class_names) == 10
  assert dataset.name == "cifar10"


def test_tfds_mock_grey_images_get_nhwc():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tiny.mock_tfds(3):
    dataset = load("tfds:mnist", "test")
  assert dataset.images.shape == (3, 28, 28, 1)


def test_tfds_missing_extra_says_what_to_install(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
  with pytest.raises(ImportError, match=r"pip install jaxwm\[tfds\]"):
    load("tfds:cifar10", "train")


@pytest.mark.parametrize("name", ["mnist", "npz:", "tfds:", "csv:/tmp/x"])
def test_unknown_names_list_the_valid_ones(name):
  with pytest.raises(ValueError, match=r"unknown dataset name .*valid names "
                     r"are digits, fashion_mnist, npz:PATH, folder:PATH, "
                     r"tfds:NAME"):
    load(name, "train")


def test_unknown_split_is_rejected():
  with pytest.raises(ValueError, match=r"split must be one of \('train', "
                     r"'test'\), got 'validation'"):
    load("digits", "validation")
