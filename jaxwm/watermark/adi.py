"""Backdoor-based model watermark with commitments (Adi et al., Section 3.1).

KeyGen samples a backdoor ``b = (T, T_L)`` (a trigger set of abstract images
with uniformly random labels, :mod:`jaxwm.watermark.trigger_sets`), draws two
32-byte openings per trigger and commits separately to every image and every
label::

    c_t^(i) = Com(t^(i), r_t^(i)),   c_L^(i) = Com(T_L^(i), r_L^(i))
    mk = (b, {r_t^(i), r_L^(i)}),    vk = {c_t^(i), c_L^(i)}

The owner publishes ``vk`` (or its :meth:`VerificationKey.digest`) on a
time-stamped board before the model is released (Section 3.2, implementation
details) and keeps ``mk`` secret; a judge passes the published digest to
:func:`verify`, which refuses any other verification key. Mark trains the
model to output ``T_L`` on ``T``; this module provides the data side of it
(:func:`trigger_arrays`, :func:`batch_with_triggers`, FROMSCRATCH's k = 2
trigger images per batch of Section 4.1) and :mod:`jaxwm.watermark.embedding`
the training, through the training engine.

Verify takes the paper's three steps, the first adapted and the third
decided in two ways:

1. "test that T_L^(i) != f(t^(i))": abstract images have no ground-truth
   label, so this step is the verifier's (a judge's) inspection of the images
   and is not automated.
2. every commitment must open (:func:`check_openings`); a marking key that
   does not open its verification key raises :class:`KeyMismatchError`
   before the model is queried at all.
3. the model is queried on the triggers, and :class:`VerificationResult`
   carries two decisions, which make different claims:

   * ``accepted_threshold``, the paper's rule: accept iff the model agrees
     with T_L on all but at most eps |T| triggers. In the paper eps is the
     error of an eps-accurate model (a marked model errs on at most that
     fraction of the triggers, the correctness proof of Theorem 1), and
     non-trivial ownership needs eps < 1/2; the paper fixes no number.
     jaxwm's default :data:`DEFAULT_EPS` = 0.1 is about the test error of
     its Fashion-MNIST models. It claims that the watermark is intact.
   * ``accepted_binomial``, jaxwm's rule: an exact one-sided binomial test
     (:mod:`jaxwm.verify.binomial`) of the agreement against chance 1/K.
     Labels are uniform and drawn before the model existed, so a model that
     was not marked agrees on Binomial(n, 1/K) triggers and is accepted
     with probability at most ``alpha``. It claims only that the model is
     not independent of the trigger set, and accepts far lower agreement
     (from 19 of 100 triggers at K = 10 and alpha = 0.01, against the
     threshold rule's 90 at eps = 0.1).

After a private verification the verifier knows ``mk`` and could retrain the
model on the trigger set, so Verify is meant for a trusted judge (Section
3.2); :mod:`jaxwm.watermark.public` gives a publicly verifiable variant.

The prediction interface is ``predict(images) -> scores``: images float32
[B, H, W, C] in [0, 1] (the convention of :mod:`jaxwm.models`), scores
[B, K] logits or probabilities, of which the arg-max is the predicted label.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import math
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxwm import fields
from jaxwm.config_checks import Fields, raise_problems
from jaxwm.data.dataset import Dataset
from jaxwm.verify.binomial import binomial_test
from jaxwm.verify.levels import DEFAULT_ALPHA
from jaxwm.watermark import commitments
from jaxwm.watermark import key_files
from jaxwm.watermark import trigger_sets

Predict = Callable[[np.ndarray], Any]
MARKING_KEY_KIND = "jaxwm/adi/marking-key/v1"
VERIFICATION_KEY_KIND = "jaxwm/adi/verification-key/v1"
DEFAULT_EPS = 0.1
FROMSCRATCH_TRIGGERS_PER_BATCH = 2
_STATEMENT_TAG = b"jaxwm/adi/verification-key/v1"


class KeyMismatchError(ValueError):
  """A marking key (or disclosure) does not open its verification key."""


class DigestMismatchError(KeyMismatchError):
  """A verification key is not the one whose digest the owner published."""


def check_published(verification_key, published_digest: str | None) -> None:
  """Refuses a verification key whose digest is not the published one.

  Args:
    verification_key: a :class:`VerificationKey` (or any key with a
      ``digest()`` method, such as a public verification key).
    published_digest: the hex ``verification_key.digest()`` the owner
      published before the suspect model existed; None skips the check.

  Raises:
    DigestMismatchError: the digests differ (e.g. someone else's key was
      saved under the owner's file names).
    ValueError: ``published_digest`` is not a SHA-256 hex string.
  """
  if published_digest is None:
    return
  published = fields.hex_digest(published_digest, "published_digest",
                                "that verification_key.digest() gave")
  found = verification_key.digest()
  if not hmac.compare_digest(found.encode(), published.encode()):
    raise DigestMismatchError(
        f"the verification key has digest {found}, not the published "
        f"{published}: it is not the key the owner published. Use the "
        "published key, or check that the digest is this key's.")


def _check_digests(name: str, value, n: int) -> np.ndarray:
  value = np.asarray(value)
  if value.dtype != np.uint8 or value.shape != (n, commitments.DIGEST_BYTES):
    raise ValueError(
        f"{name} must be uint8 [{n}, {commitments.DIGEST_BYTES}], got "
        f"{value.dtype} {value.shape}; use the arrays written by keygen.")
  return value


@dataclasses.dataclass(frozen=True, eq=False)
class MarkingKey(key_files.SavedKey):
  """The secret marking key mk = (b, {r_t^(i), r_L^(i)}).

  Attributes:
    triggers: the backdoor b: uint8 images [n, H, W, C] (T) and int32 labels
      [n] (T_L) with their number of classes K.
    image_openings: uint8 [n, 32], r_t^(i).
    label_openings: uint8 [n, 32], r_L^(i).
  """

  triggers: Dataset
  image_openings: np.ndarray
  label_openings: np.ndarray
  KIND = MARKING_KEY_KIND

  def __post_init__(self):
    if not isinstance(self.triggers, Dataset):
      raise TypeError(
          f"triggers must be a jaxwm Dataset, got "
          f"{type(self.triggers).__name__}.")
    for name in ("image_openings", "label_openings"):
      object.__setattr__(
          self, name, _check_digests(name, getattr(self, name),
                                     len(self.triggers)))

  def __len__(self) -> int:
    return len(self.triggers)

  def take(self, indices: np.ndarray) -> MarkingKey:
    """The key restricted to the triggers at ``indices`` (mk|_e, App. A)."""
    return MarkingKey(self.triggers.take(indices),
                      self.image_openings[indices],
                      self.label_openings[indices])

  def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
    return {
        prefix + "images": self.triggers.images,
        prefix + "labels": self.triggers.labels,
        prefix + "image_openings": self.image_openings,
        prefix + "label_openings": self.label_openings,
    }

  def to_metadata(self) -> dict[str, Any]:
    return {"num_classes": self.triggers.num_classes}

  @classmethod
  def from_arrays(cls, arrays: Mapping[str, np.ndarray],
                  metadata: Mapping[str, Any], path: str,
                  prefix: str = "") -> MarkingKey:
    get = key_files.getter(arrays, path, prefix)
    num_classes = key_files.int_entry(metadata, "num_classes", path)
    return key_files.construct(path, lambda: cls(
        Dataset(get("images"), get("labels"), num_classes,
                name=trigger_sets.TRIGGER_SET_NAME),
        get("image_openings"), get("label_openings")))


@dataclasses.dataclass(frozen=True, eq=False)
class VerificationKey(key_files.SavedKey):
  """The public verification key vk = {c_t^(i), c_L^(i)}.

  Attributes:
    image_commitments: uint8 [n, 32], c_t^(i).
    label_commitments: uint8 [n, 32], c_L^(i).
    num_classes: K; chance agreement is 1/K.
    image_shape: (H, W, C) of the trigger images.
  """

  image_commitments: np.ndarray
  label_commitments: np.ndarray
  num_classes: int
  image_shape: tuple[int, int, int]
  KIND = VERIFICATION_KEY_KIND

  def __post_init__(self):
    n = len(np.asarray(self.image_commitments))
    for name in ("image_commitments", "label_commitments"):
      object.__setattr__(self, name,
                         _check_digests(name, getattr(self, name), n))
    num_classes = fields.integer(self.num_classes, "num_classes", low=2)
    shape = fields.integers(self.image_shape, "image_shape", low=1)
    if len(shape) != 3:
      raise ValueError(f"image_shape must be (H, W, C), got {shape}.")
    object.__setattr__(self, "num_classes", num_classes)
    object.__setattr__(self, "image_shape", shape)

  def __len__(self) -> int:
    return int(self.image_commitments.shape[0])

  def take(self, indices: np.ndarray) -> VerificationKey:
    """The commitments at ``indices`` (vk|_e of Appendix A)."""
    return dataclasses.replace(
        self, image_commitments=self.image_commitments[indices],
        label_commitments=self.label_commitments[indices])

  def statement(self) -> bytes:
    """Canonical encoding of the whole key: every commitment, K and shape."""
    return commitments.frame(
        _STATEMENT_TAG, commitments.encode_array(self.image_commitments),
        commitments.encode_array(self.label_commitments),
        commitments.encode_array(
            np.array((self.num_classes,) + self.image_shape, np.int64)))

  def digest(self) -> str:
    """SHA-256 hex of :meth:`statement`: the value to publish."""
    return hashlib.sha256(self.statement()).hexdigest()

  def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
    return {
        prefix + "image_commitments": self.image_commitments,
        prefix + "label_commitments": self.label_commitments,
    }

  def to_metadata(self) -> dict[str, Any]:
    return {"num_classes": self.num_classes,
            "image_shape": list(self.image_shape)}

  @classmethod
  def from_arrays(cls, arrays: Mapping[str, np.ndarray],
                  metadata: Mapping[str, Any], path: str,
                  prefix: str = "") -> VerificationKey:
    get = key_files.getter(arrays, path, prefix)
    shape = key_files.entry(metadata, "image_shape", path)
    return key_files.construct(path, lambda: cls(
        get("image_commitments"), get("label_commitments"),
        key_files.int_entry(metadata, "num_classes", path), shape))


@dataclasses.dataclass(frozen=True)
class VerificationResult:
  """Outcome of :func:`verify` (or of :func:`public.public_verify`).

  Both decisions of Verify step 3 (module docstring); there is no single
  "accepted": a report names the rule it states.

  Attributes:
    agreement: fraction of queried triggers whose label the model predicts.
    matches: number of those triggers.
    trials: number of triggers queried.
    chance: 1/K, the agreement expected of a model that was not marked.
    p_value: exact one-sided binomial p-value, in [5e-324, 1].
    log10_p_value: its log10, exact even below 5e-324.
    alpha: significance level of the binomial test.
    accepted_binomial: whether p_value <= alpha (jaxwm's rule: the model
      is not independent of the trigger set).
    eps: the fraction of triggers on which the paper's rule tolerates
      disagreement.
    accepted_threshold: whether trials - matches <= eps * trials (the
      paper's rule: the watermark is intact).
  """

  agreement: float
  matches: int
  trials: int
  chance: float
  p_value: float
  log10_p_value: float
  alpha: float
  accepted_binomial: bool
  eps: float
  accepted_threshold: bool


def max_disagreements(trials: int, eps: float) -> int:
  """floor(eps |T|): the disagreements the paper's rule tolerates.

  The 1e-9 absorbs the rounding of eps * trials in binary, so that e.g.
  eps = 0.29 tolerates 29 of 100, not 28.
  """
  return math.floor(eps * trials + 1e-9)


def _encoded_triggers(triggers: Dataset) -> tuple[list[bytes], list[bytes]]:
  return ([commitments.encode_array(image) for image in triggers.images],
          [commitments.encode_label(label) for label in triggers.labels])


def commit_to(marking_key: MarkingKey) -> VerificationKey:
  """The verification key that ``marking_key``'s openings commit to."""
  images, labels = _encoded_triggers(marking_key.triggers)
  return VerificationKey(
      commitments.commit_each(images, marking_key.image_openings),
      commitments.commit_each(labels, marking_key.label_openings),
      marking_key.triggers.num_classes, marking_key.triggers.image_shape)


def check_openings(marking_key: MarkingKey,
                   verification_key: VerificationKey) -> None:
  """Verify step 2: every image and label opens its commitment.

  Raises:
    KeyMismatchError: sizes, K or image shapes differ, or some commitment
      does not open; the message names the failing trigger indices.
  """
  triggers = marking_key.triggers
  mine = (len(triggers), triggers.num_classes, triggers.image_shape)
  theirs = (len(verification_key), verification_key.num_classes,
            verification_key.image_shape)
  if mine != theirs:
    raise KeyMismatchError(
        f"the marking key has (n, K, image_shape) = {mine} but the "
        f"verification key {theirs}; pass the pair that keygen returned.")
  images, labels = _encoded_triggers(triggers)
  good = commitments.open_each(
      verification_key.image_commitments, images,
      marking_key.image_openings) & commitments.open_each(
          verification_key.label_commitments, labels,
          marking_key.label_openings)
  bad = np.flatnonzero(~good)
  if bad.size:
    raise KeyMismatchError(
        f"{bad.size} of {good.size} triggers do not open their commitments "
        f"(indices {bad[:10].tolist()}{' ...' if bad.size > 10 else ''}): the "
        "marking key was modified or belongs to another verification key. "
        "Use the unmodified pair that keygen returned.")


def keygen(n: int, num_classes: int, image_shape,
           seed: int | bytes | None = None,
           trigger_set: Dataset | None = None
           ) -> tuple[MarkingKey, VerificationKey]:
  """KeyGen of Section 3.1: a trigger set and commitments to it.

  Args:
    n: trigger set size (the paper uses 100).
    num_classes: K of the model to be marked.
    image_shape: (H, W, C) of the model's inputs.
    seed: seeds the abstract trigger set; None (default) draws it with
      :mod:`secrets`. Pass a seed only in tests: whoever knows it can
      regenerate the trigger set. Openings always come from :mod:`secrets`.
    trigger_set: use these n images and labels instead of abstract images
      (e.g. from :func:`trigger_sets.folder_trigger_set`).

  Returns:
    (marking_key, verification_key).
  """
  if trigger_set is None:
    trigger_set = trigger_sets.abstract_trigger_set(n, num_classes,
                                                    image_shape, seed)
  wanted = (int(n), int(num_classes), tuple(int(d) for d in image_shape))
  found = (len(trigger_set), trigger_set.num_classes, trigger_set.image_shape)
  if found != wanted:
    raise ValueError(
        f"trigger_set has (n, K, image_shape) = {found} but keygen was asked "
        f"for {wanted}; pass matching arguments.")
  marking_key = MarkingKey(trigger_set,
                           commitments.new_openings(len(trigger_set)),
                           commitments.new_openings(len(trigger_set)))
  return marking_key, commit_to(marking_key)


def _check_decision_levels(alpha: float, eps: float) -> tuple[float, float]:
  """Raises a ConfigError for alpha outside (0, 1) or eps outside [0, 0.5):
  the paper's rule accepts a model that disagrees on at most eps |T|
  triggers, and ownership is only non-trivial for eps < 1/2."""
  problems: list = []
  levels = Fields({"alpha": alpha, "eps": eps}, "", problems, flags=False)
  levels.number("alpha", 0, 1, low_open=True, high_open=True,
                example=DEFAULT_ALPHA)
  levels.number("eps", 0, 0.5, high_open=True, example=DEFAULT_EPS)
  raise_problems(problems)
  return float(alpha), float(eps)


def decide_agreement(triggers: Dataset, predict: Predict, num_classes: int,
                     alpha: float = DEFAULT_ALPHA,
                     eps: float = DEFAULT_EPS) -> VerificationResult:
  """Verify step 3: queries ``predict`` on the triggers and decides both ways.

  Args:
    triggers: opened trigger images and labels.
    predict: images float32 [B, H, W, C] in [0, 1] -> scores [B, K].
    num_classes: K from the verification key; the scores must have K columns.
    alpha: significance level of the binomial test, in (0, 1).
    eps: the paper's tolerated fraction of disagreements, in [0, 0.5).

  Returns:
    VerificationResult with the binomial test against chance 1/K and the
    paper's threshold rule.
  """
  alpha, eps = _check_decision_levels(alpha, eps)
  scores = np.asarray(predict(triggers.float_images()))
  if scores.shape != (len(triggers), num_classes):
    raise ValueError(
        f"predict returned scores of shape {scores.shape} for "
        f"{len(triggers)} images; it must return [B, K] = "
        f"[{len(triggers)}, {num_classes}] logits or probabilities.")
  if not np.all(np.isfinite(scores)):
    raise ValueError(
        "predict returned non-finite scores; check the model's parameters.")
  matches = int(np.sum(scores.argmax(axis=-1) == triggers.labels))
  trials = len(triggers)
  test = binomial_test(matches, trials, 1.0 / num_classes)
  return VerificationResult(
      agreement=matches / trials, matches=matches, trials=trials,
      chance=test.chance, p_value=test.p_value,
      log10_p_value=test.log10_p_value, alpha=alpha,
      accepted_binomial=test.p_value <= alpha, eps=eps,
      accepted_threshold=trials - matches <= max_disagreements(trials, eps))


def verify(marking_key: MarkingKey, verification_key: VerificationKey,
           predict: Predict, alpha: float = DEFAULT_ALPHA,
           eps: float = DEFAULT_EPS, *,
           published_digest: str | None = None
           ) -> VerificationResult:
  """Verify(mk, vk, M) of Section 3.1 (see the module docstring).

  Args:
    marking_key: the owner's secret key.
    verification_key: the published key.
    predict: the suspect model, images float32 [B, H, W, C] in [0, 1] ->
      scores [B, K].
    alpha: significance level of the binomial test (``accepted_binomial``
      iff p <= alpha).
    eps: the paper's rule (``accepted_threshold`` iff at most eps |T|
      triggers disagree).
    published_digest: the hex :meth:`VerificationKey.digest` the owner
      published; a judge should always pass it, since without it a pair of
      keys an attacker made and saved under the owner's file names verifies
      his own model.

  Returns:
    VerificationResult.

  Raises:
    ConfigError: before any query, for alpha outside (0, 1) or eps outside
      [0, 0.5).
    DigestMismatchError: before any query, if the verification key's digest
      is not ``published_digest``.
    KeyMismatchError: before any query, if the keys do not match.
  """
  _check_decision_levels(alpha, eps)
  check_published(verification_key, published_digest)
  check_openings(marking_key, verification_key)
  return decide_agreement(marking_key.triggers, predict,
                          verification_key.num_classes, alpha, eps)


def trigger_arrays(marking_key) -> tuple[jax.Array, jax.Array]:
  """The triggers that Mark embeds, as arrays like the engine's batches.

  Args:
    marking_key: a :class:`MarkingKey`, or a
      :class:`public.PublicMarkingKey` (whose private half is embedded).

  Returns:
    (images uint8 [n, H, W, C], labels int32 [n]): the storage format of a
    :class:`Dataset`, which the training engine gathers its batches from.
  """
  triggers = marking_key.triggers
  return jnp.asarray(triggers.images), jnp.asarray(triggers.labels)


def batch_with_triggers(images: jax.Array, labels: jax.Array,
                        trigger_images: jax.Array, trigger_labels: jax.Array,
                        key: jax.Array,
                        k: int = FROMSCRATCH_TRIGGERS_PER_BATCH
                        ) -> tuple[jax.Array, jax.Array]:
  """Puts ``k`` distinct random triggers into a batch (Section 4.1).

  The paper appends k triggers to every batch. A batch sharded over devices
  must keep its size, so here the triggers overwrite the batch's last ``k``
  rows instead: with the engine's shuffled batches those rows are ``k``
  random training examples, so an epoch sees a fraction k / B fewer of them.

  Pure and jit-compatible (``k`` static).

  Args:
    images: [B, H, W, C] batch images.
    labels: int [B].
    trigger_images: [n, H, W, C], same dtype as ``images`` (uint8 from
      :func:`trigger_arrays` for the engine's batches).
    trigger_labels: int [n].
    key: jax.random key choosing the triggers.
    k: triggers per batch, 1 <= k <= min(n, B - 1); FROMSCRATCH uses 2.

  Returns:
    (images [B, H, W, C], labels [B]): rows B - k .. B - 1 replaced by the
    chosen triggers and their labels, the other rows unchanged.
  """
  n, batch = trigger_images.shape[0], images.shape[0]
  if not 1 <= k <= min(n, batch - 1):
    raise ValueError(
        f"k must be in [1, min(n, B - 1)] = [1, {min(n, batch - 1)}] for a "
        f"trigger set of n = {n} and a batch of B = {batch}, got {k}; use a "
        "smaller k or a larger batch.")
  if trigger_images.shape[1:] != images.shape[1:]:
    raise ValueError(
        f"trigger images have shape {trigger_images.shape[1:]} but batch "
        f"images {images.shape[1:]}; generate the trigger set for the "
        "model's image shape.")
  if trigger_images.dtype != images.dtype:
    raise TypeError(
        f"trigger images are {trigger_images.dtype} but batch images "
        f"{images.dtype}; convert both the same way (trigger_arrays gives "
        "the uint8 images of a Dataset).")
  chosen = jax.random.choice(key, n, shape=(k,), replace=False)
  # Row r takes trigger chosen[r - (B - k)] when r >= B - k. Written as a
  # per-row gather and select, so that a batch sharded over devices is
  # mixed on each device without any cross-device communication.
  slot = jnp.arange(batch) - (batch - k)
  rows = chosen[jnp.clip(slot, 0, k - 1)]
  is_trigger = slot >= 0
  mixed_images = jnp.where(is_trigger.reshape((batch,) + (1,) * (
      images.ndim - 1)), trigger_images[rows], images)
  mixed_labels = jnp.where(is_trigger, trigger_labels[rows].astype(
      labels.dtype), labels)
  return mixed_images, mixed_labels
