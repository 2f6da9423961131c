"""Bad files a user may receive: forged keys, truncated, renamed or foreign
files, wrong digests, and dataset files that do not fit together.

Every case is a deliberate forger's or an unlucky user's file. The forged key
files come with a recomputed manifest, so only the cross-checks of metadata
against arrays (or the digest the owner kept) can refuse them. Each case
asserts the error type and that the message names the file or field and the
value at fault.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
from typing import Any, Callable

import jax
import numpy as np
import pytest

from configs import train as train_config
from jaxwm import secure_files
from jaxwm.data import loaders
from jaxwm.poison import availability
from jaxwm.poison import triggers
from jaxwm.poison.watermark_key import WatermarkKey
from jaxwm.safe_npz import NpzFormatError
from jaxwm.secure_files import TamperedFileError
from jaxwm.train import recipe
from jaxwm.watermark import adi
from jaxwm.watermark import public

SHAPE = (8, 8, 1)
NUM_CLASSES = 10
TARGET = 3
NUM_SAMPLES = 40


def _watermark_key(trigger: triggers.Trigger) -> WatermarkKey:
  return WatermarkKey(
      method=trigger.name, trigger=trigger, target_label=TARGET,
      num_classes=NUM_CLASSES, source_classes=range(NUM_CLASSES),
      poisoned_indices=[3, 5, 8], num_samples=NUM_SAMPLES,
      seed=np.array([0, 7], np.uint32), noise_indices=[10, 11])


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
  """One key of every kind that is saved with secure_files."""
  mk, vk = adi.keygen(12, NUM_CLASSES, SHAPE, seed=0)
  pmk, pvk = public.public_keygen(4, NUM_CLASSES, SHAPE, seed=1)
  perturbation = np.random.default_rng(0).integers(
      -8, 9, (NUM_SAMPLES,) + SHAPE)
  return {
      # A 1x1 patch in the bottom-right corner, at (7, 7).
      "badnets": _watermark_key(triggers.badnets_trigger(SHAPE)),
      "blended": _watermark_key(triggers.blended_trigger(jax.random.key(1),
                                                         SHAPE)),
      "wanet": _watermark_key(triggers.wanet_trigger(jax.random.key(2),
                                                     SHAPE)),
      "availability": availability.AvailabilityKey(
          method="random_noise", epsilon=8 / 255,
          poisoned_indices=np.arange(NUM_SAMPLES), num_samples=NUM_SAMPLES,
          perturbation=perturbation, seed=np.array([0, 1], np.uint32)),
      "mk": mk, "vk": vk, "pmk": pmk, "pvk": pvk,
      "disclosure": public.disclose(pmk, pvk, b"session"),
  }


def _rewrite_manifest(prefix: str) -> None:
  """A fresh manifest for whatever PREFIX.npz and PREFIX.json now hold."""
  sha256 = {}
  for suffix in (".npz", ".json"):
    with open(prefix + suffix, "rb") as f:
      sha256[os.path.basename(prefix) + suffix] = hashlib.sha256(
          f.read()).hexdigest()
  with open(prefix + ".manifest.json", "w") as f:
    json.dump({"format": secure_files.FORMAT, "sha256": sha256}, f,
              sort_keys=True, indent=1)


def _forge(key, tmp_path, metadata_edit=None, arrays_edit=None
           ) -> tuple[str, str]:
  """Saves ``key``, edits its contents and writes them back with a
  recomputed manifest; returns (prefix, the digest the owner kept)."""
  prefix = str(tmp_path / "key")
  kept = key.save(prefix)
  arrays, metadata = secure_files.load(prefix)
  if metadata_edit:
    metadata_edit(metadata)
  if arrays_edit:
    arrays_edit(arrays)
  secure_files.save(prefix, arrays, metadata)
  return prefix, kept


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
  """An edit setting the entry at the dotted ``path`` of a mapping."""
  *parents, name = path.split(".")

  def edit(mapping):
    for parent in parents:
      mapping = mapping[parent]
    mapping[name] = value

  return edit


def _load_forged(kind: str, load, metadata_edit=None, arrays_edit=None):
  """The action of a case: forge the key of ``kind`` at ``tmp_path/key``
  and load it with ``load``."""

  def action(tmp_path, keys):
    prefix, _ = _forge(keys[kind], tmp_path, metadata_edit, arrays_edit)
    load(prefix)

  return action


def _with_kept_digest(tmp_path, keys):
  # The target changed to another valid class: only the digest refuses it.
  prefix, kept = _forge(keys["badnets"], tmp_path,
                        _set("target_label", TARGET + 2))
  assert WatermarkKey.load(prefix).target_label == TARGET + 2
  WatermarkKey.load(prefix, digest=kept)


def _renamed(tmp_path, keys):
  keys["badnets"].save(str(tmp_path / "key"))
  for suffix in (".npz", ".json", ".manifest.json"):
    os.rename(tmp_path / f"key{suffix}", tmp_path / f"renamed{suffix}")
  WatermarkKey.load(str(tmp_path / "renamed"))


def _wrong_digest(tmp_path, keys):
  keys["mk"].save(str(tmp_path / "key"))
  adi.MarkingKey.load(str(tmp_path / "key"), digest="0" * 64)


def _malformed_digest(tmp_path, keys):
  keys["pvk"].save(str(tmp_path / "key"))
  public.PublicVerificationKey.load(str(tmp_path / "key"), digest="abc")


def _forged_truncated_npz(tmp_path, keys):
  prefix = str(tmp_path / "key")
  keys["availability"].save(prefix)
  data = (tmp_path / "key.npz").read_bytes()
  (tmp_path / "key.npz").write_bytes(data[:len(data) // 2])
  _rewrite_manifest(prefix)
  availability.AvailabilityKey.load(prefix)


def _metadata_not_an_object(tmp_path, keys):
  prefix = str(tmp_path / "key")
  keys["vk"].save(prefix)
  (tmp_path / "key.json").write_text("[1, 2]")
  _rewrite_manifest(prefix)
  adi.VerificationKey.load(prefix)


def _refuse_queries(images):
  raise AssertionError("the model was queried with a refused key")


def _attacker_pair_under_owner_names(tmp_path, keys):
  published = keys["vk"].digest()
  mk, vk = adi.keygen(12, NUM_CLASSES, SHAPE, seed=5)
  mk.save(str(tmp_path / "marking_key"))
  vk.save(str(tmp_path / "verification_key"))
  adi.verify(adi.MarkingKey.load(str(tmp_path / "marking_key")),
             adi.VerificationKey.load(str(tmp_path / "verification_key")),
             _refuse_queries, published_digest=published)


def _another_public_key(tmp_path, keys):
  del tmp_path
  pmk, pvk = public.public_keygen(4, NUM_CLASSES, SHAPE, seed=2)
  public.public_verify(pvk, public.disclose(pmk, pvk, b"s"), _refuse_queries,
                       b"s", published_digest=keys["pvk"].digest())


def _npz_file(tmp_path, content: bytes) -> str:
  path = tmp_path / "data.npz"
  path.write_bytes(content)
  return str(path)


def _load_npz_bytes(content: Callable[[Any], bytes]):
  def action(tmp_path, keys):
    del keys
    loaders.load("npz:" + _npz_file(tmp_path, content(tmp_path)), "train")
  return action


def _good_npz_bytes(tmp_path, **arrays) -> bytes:
  path = tmp_path / "good.npz"
  np.savez(path, **{"train_images": np.zeros((4, 8, 8), np.uint8),
                    "train_labels": np.arange(4) % 2, **arrays})
  return path.read_bytes()


def _npy_bytes(tmp_path) -> bytes:
  np.save(tmp_path / "array.npy", np.zeros(3))
  return (tmp_path / "array.npy").read_bytes()


def _zip_of_text(tmp_path) -> bytes:
  with zipfile.ZipFile(tmp_path / "text.zip", "w") as archive:
    archive.writestr("train_labels", "0 1 0 1")
  return (tmp_path / "text.zip").read_bytes()


def _splits_of_two_sizes(tmp_path, keys):
  del keys
  np.savez(tmp_path / "data.npz",
           train_images=np.zeros((4, 8, 8), np.uint8),
           train_labels=np.arange(4) % 2,
           test_images=np.zeros((4, 10, 10), np.uint8),
           test_labels=np.arange(4) % 2)
  config = train_config.get_config("digits,runlocal")
  config.dataset = "npz:" + str(tmp_path / "data.npz")
  recipe.load_datasets(config)


@dataclasses.dataclass(frozen=True)
class Case:
  """``action(tmp_path, keys)`` must raise ``error`` with
  every string of ``needles`` in its message ("{tmp}" stands for
  tmp_path)."""

  name: str
  action: Callable[..., None]
  error: type[Exception]
  needles: tuple[str, ...]


CASES = [
    # Dataset watermark keys, forged with a recomputed manifest.
    Case("badnets_position_off_the_patch",
         _load_forged("badnets", WatermarkKey.load,
                      _set("trigger.params.position", [0, 0])),
         TamperedFileError, ("{tmp}/key", "position [0, 0]", "[7, 7]")),
    Case("badnets_size_off_the_patch",
         _load_forged("badnets", WatermarkKey.load,
                      _set("trigger.params.size", [8, 8])),
         TamperedFileError, ("{tmp}/key", "size [8, 8]", "[7, 7]")),
    Case("num_classes_not_integral",
         _load_forged("badnets", WatermarkKey.load,
                      _set("num_classes", 10.5)),
         TamperedFileError, ("{tmp}/key", "num_classes", "10.5")),
    Case("num_classes_a_bool",
         _load_forged("badnets", WatermarkKey.load,
                      _set("num_classes", True)),
         TamperedFileError, ("num_classes", "True")),
    Case("target_out_of_range",
         _load_forged("badnets", WatermarkKey.load,
                      _set("target_label", NUM_CLASSES)),
         TamperedFileError, ("target_label", f"got {NUM_CLASSES}")),
    Case("target_changed_within_range_against_kept_digest",
         _with_kept_digest, TamperedFileError,
         ("{tmp}/key.manifest.json", "digest you kept")),
    Case("poisoned_index_beyond_the_dataset",
         _load_forged("badnets", WatermarkKey.load, arrays_edit=_set(
             "poisoned_indices", np.array([3, 10**9]))),
         TamperedFileError, ("poisoned_indices", "1000000000", "40")),
    Case("poisoned_indices_as_floats",
         _load_forged("badnets", WatermarkKey.load, arrays_edit=_set(
             "poisoned_indices", np.array([3.0, 4.0]))),
         TamperedFileError, ("poisoned_indices", "float64")),
    Case("noise_index_also_poisoned",
         _load_forged("wanet", WatermarkKey.load, arrays_edit=_set(
             "noise_indices", np.array([5, 10]))),
         TamperedFileError, ("noise_indices", "share index 5")),
    Case("source_class_not_integral",
         _load_forged("badnets", WatermarkKey.load,
                      _set("source_classes", [1.0])),
         TamperedFileError, ("source_classes", "1.0")),
    Case("num_samples_a_string",
         _load_forged("badnets", WatermarkKey.load, _set("num_samples", "40")),
         TamperedFileError, ("num_samples", "'40'")),
    Case("blended_alpha_not_the_stored_weights",
         _load_forged("blended", WatermarkKey.load,
                      _set("trigger.params.alpha", 0.5)),
         TamperedFileError, ("params.alpha", "0.5")),
    Case("wanet_k_out_of_range",
         _load_forged("wanet", WatermarkKey.load, _set("trigger.params.k", 1)),
         TamperedFileError, ("params.k", "got 1")),
    Case("trigger_name_of_another_kind",
         _load_forged("wanet", WatermarkKey.load,
                      _set("trigger.name", "badnets")),
         TamperedFileError, ("'badnets'", "'warp'")),
    # Availability keys.
    Case("availability_index_beyond_num_samples",
         _load_forged("availability", availability.AvailabilityKey.load,
                      _set("num_samples", 20)),
         TamperedFileError, ("poisoned_indices", "index 20", "20)")),
    Case("availability_epsilon_a_bool",
         _load_forged("availability", availability.AvailabilityKey.load,
                      _set("epsilon", True)),
         TamperedFileError, ("epsilon", "True")),
    Case("availability_perturbation_as_floats",
         _load_forged("availability", availability.AvailabilityKey.load,
                      arrays_edit=lambda a: a.update(
                          perturbation=a["perturbation"] + 0.5)),
         TamperedFileError, ("perturbation", "float64")),
    # Model watermark keys.
    Case("marking_key_num_classes_not_integral",
         _load_forged("mk", adi.MarkingKey.load, _set("num_classes", 10.5)),
         TamperedFileError, ("{tmp}/key", "num_classes", "10.5")),
    Case("marking_key_label_out_of_range",
         _load_forged("mk", adi.MarkingKey.load, arrays_edit=lambda a: a[
             "labels"].__setitem__(0, 12)),
         TamperedFileError, ("{tmp}/key", "label 12")),
    Case("verification_key_image_shape_not_integral",
         _load_forged("vk", adi.VerificationKey.load,
                      _set("image_shape", [8, 8.5, 1])),
         TamperedFileError, ("image_shape", "8.5")),
    Case("public_key_id_chosen_by_the_prover",
         _load_forged("pvk", public.PublicVerificationKey.load,
                      _set("key_id", "ab" * 16)),
         TamperedFileError, ("{tmp}/key", "key_id", "ab" * 16, "derived")),
    Case("public_key_opened_per_session_zero",
         _load_forged("pvk", public.PublicVerificationKey.load,
                      _set("opened_per_session", 0)),
         TamperedFileError, ("opened_per_session", "got 0")),
    Case("disclosure_indices_as_floats",
         _load_forged("disclosure", public.Disclosure.load,
                      arrays_edit=lambda a: a.update(
                          indices=a["indices"].astype(np.float64))),
         TamperedFileError, ("indices", "float64")),
    # Files renamed, truncated or foreign; digests wrong.
    Case("renamed_key_files", _renamed, TamperedFileError,
         ("renamed", "'key.npz'", "{tmp}/renamed.manifest.json",
          "renamed.npz")),
    Case("wrong_digest", _wrong_digest, TamperedFileError,
         ("{tmp}/key.manifest.json", "0" * 64)),
    Case("malformed_digest", _malformed_digest, ValueError,
         ("digest", "'abc'")),
    Case("forged_truncated_npz", _forged_truncated_npz, TamperedFileError,
         ("{tmp}/key.npz", "truncated or corrupt")),
    Case("metadata_not_an_object", _metadata_not_an_object,
         TamperedFileError, ("{tmp}/key.json", "list")),
    # Verification against the published digest.
    Case("attacker_key_pair_under_the_owner_file_names",
         _attacker_pair_under_owner_names, adi.DigestMismatchError,
         ("published", "not the key the owner published")),
    Case("public_verify_with_another_key", _another_public_key,
         adi.DigestMismatchError, ("published",)),
    # Dataset files.
    Case("npz_that_is_text",
         _load_npz_bytes(lambda _: b"train_images: 1 2 3\n"), NpzFormatError,
         ("{tmp}/data.npz", "not an npz file", "b'train_im'")),
    Case("npz_empty", _load_npz_bytes(lambda _: b""), NpzFormatError,
         ("{tmp}/data.npz", "not an npz file", "empty")),
    Case("npz_truncated",
         _load_npz_bytes(lambda tmp: _good_npz_bytes(tmp)[:300]),
         NpzFormatError, ("{tmp}/data.npz", "truncated or corrupt")),
    Case("npy_named_npz", _load_npz_bytes(_npy_bytes), NpzFormatError,
         ("{tmp}/data.npz", "single .npy array")),
    Case("npz_member_not_an_array", _load_npz_bytes(_zip_of_text),
         NpzFormatError, ("{tmp}/data.npz", "'train_labels'",
                          "not an .npy array")),
    Case("npz_object_array",
         _load_npz_bytes(lambda tmp: _good_npz_bytes(
             tmp, class_names=np.array(["a", None], dtype=object))),
         NpzFormatError, ("{tmp}/data.npz", "'class_names'")),
    Case("train_and_test_images_of_two_sizes", _splits_of_two_sizes,
         ValueError, ("data.npz", "(8, 8, 1)", "(10, 10, 1)")),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_file_is_refused_with_a_message_naming_it(case, tmp_path, keys):
  with pytest.raises(case.error) as raised:
    case.action(tmp_path, keys)
  message = str(raised.value)
  for needle in case.needles:
    assert needle.format(tmp=tmp_path) in message, (needle, message)
  assert "pickle" not in message or case.name == "npz_object_array"


def test_every_key_kind_loads_with_its_digest(tmp_path, keys):
  loads = {"badnets": WatermarkKey.load,
           "availability": availability.AvailabilityKey.load,
           "mk": adi.MarkingKey.load, "vk": adi.VerificationKey.load,
           "pmk": public.PublicMarkingKey.load,
           "pvk": public.PublicVerificationKey.load,
           "disclosure": public.Disclosure.load}
  for kind, load in loads.items():
    prefix = str(tmp_path / kind)
    digest = keys[kind].save(prefix)
    assert type(load(prefix, digest=digest)) is type(keys[kind])
    assert type(load(prefix, digest=digest.upper())) is type(keys[kind])
