"""``fit`` and ``evaluate``: the loops around the compiled step.

By default the training set lives on the device. Each epoch draws one
permutation with ``jax.random.permutation``; each step gathers its batch
from device memory in a small jitted function, so the host only dispatches
work. Multi-process jobs and streaming datasets are fed from the host
instead: each process reads its rows of every batch at the same
permutation's positions, a few batches ahead of the step. An ensemble
(:mod:`jaxwm.train.ensemble`) goes through the same loop, each member with
its own rows and its own permutation of them. Values are copied
back to the host only every ``log_every_steps`` steps and at the end of each
epoch, for the progress line and the divergence check: the first step whose
loss is NaN or infinite is remembered on the device and reported there as a
:class:`TrainingDivergedError`, before any checkpoint of the diverged model
is saved.

The host keeps at most a few steps ahead of the device
(:mod:`jaxwm.train.dispatch` says why).
"""

from __future__ import annotations

import os
import sys
import time
from concurrent import futures
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import Mesh

from jaxwm import identity as identity_lib
from jaxwm.data.dataset import Dataset
from jaxwm.data.streaming import StreamingDataset
from jaxwm.fingerprint import array_digest
from jaxwm.monitor import run_log
from jaxwm.train import dispatch, ensemble, sharding
from jaxwm.train.checkpoint import Checkpointer
from jaxwm.train.state import TrainState
from jaxwm.train.step import StepFn

# (batch, key) -> batch of the same shapes, run on device before each step.
BatchFn = Callable[[dict[str, jax.Array], jax.Array], dict[str, jax.Array]]
# The learning rate: a constant or a schedule of the optimizer step.
LearningRate = float | Callable[[int], Any]


class TrainingDivergedError(RuntimeError):
  """The training loss became NaN or infinite.

  Attributes:
    step: the 1-based optimizer step whose loss was first not finite.
    epoch: the 1-based epoch of that step.
    loss: that loss (NaN or +-inf).
    learning_rate: the learning rate of that step, None when unknown.
  """

  def __init__(self, step: int, epoch: int, loss: float,
               learning_rate: float | None):
    self.step, self.epoch, self.loss = step, epoch, loss
    self.learning_rate = learning_rate
    rate = ("unknown" if learning_rate is None else
            f"{learning_rate:.6g}")
    super().__init__(
        f"training diverged: the loss is {loss} at step {step} (epoch "
        f"{epoch}), learning rate {rate}. Lower train.learning_rate (e.g. "
        "--config.train.learning_rate=0.01), check the training images and "
        "labels for NaN or out-of-range values, or, in bfloat16, train in "
        "float32 (--config.train.dtype=float32). The diverged model was not "
        "checkpointed.")


@jax.jit
def _first_non_finite(first_step: jax.Array, first_loss: jax.Array,
                      loss: jax.Array, step: jax.Array
                      ) -> tuple[jax.Array, jax.Array]:
  """Keeps (step, loss) of the first non-finite loss.

  Args:
    first_step: int32 [], the step recorded so far, -1 while none.
    first_loss: float32 [], its loss.
    loss: float [] (or [E], the members of an ensemble), the loss of
      ``step``.
    step: int32 [], the 0-based optimizer step.

  Returns:
    The updated (first_step, first_loss): of an ensemble, the first
    non-finite member's loss.
  """
  losses = jnp.ravel(loss)
  bad = ~jnp.isfinite(losses)
  new = (first_step < 0) & jnp.any(bad)
  return (jnp.where(new, step, first_step),
          jnp.where(new, losses[jnp.argmax(bad)].astype(jnp.float32),
                    first_loss))


class _DivergenceGuard:
  """Remembers on device the first step with a non-finite loss.

  :meth:`update` only dispatches a tiny computation; :meth:`check` copies
  two scalars to the host and raises :class:`TrainingDivergedError`.
  """

  def __init__(self, steps_per_epoch: int,
               learning_rate: LearningRate | None):
    self._steps_per_epoch = steps_per_epoch
    self._learning_rate = learning_rate
    self._first = (jnp.int32(-1), jnp.float32(0))

  def update(self, step: int, loss: jax.Array) -> None:
    """Records ``loss``, the loss of the 0-based optimizer step ``step``."""
    self._first = _first_non_finite(*self._first, loss, step)

  def check(self) -> None:
    step, loss = (v.item() for v in jax.device_get(self._first))
    if step < 0:
      return
    rate = self._learning_rate
    if callable(rate):
      rate = rate(step)
    raise TrainingDivergedError(
        step + 1, step // self._steps_per_epoch + 1, loss,
        None if rate is None else float(rate))


def _progress_bar(total: int, initial: int, enabled: bool | None):
  if enabled is None:
    enabled = sys.stderr.isatty() or "ipykernel" in sys.modules
  if not enabled:
    return None
  from tqdm import auto as tqdm_auto  # pylint: disable=g-import-not-at-top
  return tqdm_auto.tqdm(total=total, initial=initial, unit="step",
                        dynamic_ncols=True)


def _emit(line: str, bar) -> None:
  """Writes a progress line: to the absl log where it shows INFO (the
  launchers), else to stderr unless a progress bar already shows it (a
  script, whose output may be a file or a pipe)."""
  if logging.level_info():
    logging.info("%s", line)
  elif bar is None:
    print(line, file=sys.stderr, flush=True)


class _Progress:
  """Logs step, loss, accuracy, images/s and ETA at a fixed step interval,
  and reports them to the run log's ``track`` (``model i/N``, the overall
  ETA, the curves) when there is one."""

  def __init__(self, total_steps: int, first_step: int, batch_size: int,
               every: int, progress_bar: bool | None,
               track: run_log.ModelTrack | None):
    self._total = total_steps
    self._batch_size = batch_size
    self._every = max(1, every)
    self._pending: list[dict[str, jax.Array]] = []
    self._mark_step, self._mark_time = first_step, time.perf_counter()
    self._bar = _progress_bar(total_steps, first_step, progress_bar)
    self._track = track
    self._prefix = "" if track is None else track.prefix()
    if self._bar is not None and self._prefix:
      self._bar.set_description(self._prefix.strip())

  def update(self, step: int, metrics: dict[str, jax.Array],
             force: bool = False) -> bool:
    """Queues a step's metrics; logs (a host sync) at the interval or when
    ``force``. Returns whether it synchronised."""
    self._pending.append(metrics)
    if self._bar is not None:
      self._bar.update(1)
    if not force and step % self._every:
      return False
    means = jax.device_get(jax.tree.map(lambda *m: jnp.mean(jnp.stack(m)),
                                        *self._pending))
    self._pending = []
    now = time.perf_counter()
    steps_per_s = (step - self._mark_step) / max(now - self._mark_time, 1e-9)
    self._mark_step, self._mark_time = step, now
    eta = (self._total - step) / max(steps_per_s, 1e-9)
    overall = ""
    if self._track is not None:
      self._track.record(step, means["loss"], means["accuracy"])
      overall_eta = self._track.overall_eta(eta)
      if overall_eta is not None:
        overall = f"  overall ETA {overall_eta:.0f}s"
    _emit(f"{self._prefix}step {step}/{self._total}  loss "
          f"{means['loss']:.4f}  accuracy {means['accuracy']:.4f}  "
          f"{steps_per_s * self._batch_size:.0f} images/s  ETA {eta:.0f}s"
          f"{overall}", self._bar)
    if self._bar is not None:
      self._bar.set_postfix(loss=f"{means['loss']:.4f}",
                            acc=f"{means['accuracy']:.3f}")
    return True

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
    if self._track is not None:
      self._track.finish()


def _device_batcher(images, labels, batch_size: int, mesh: Mesh,
                    batch_fn: BatchFn | None, members: int | None):
  """Returns ``batcher(perm, index, base_key, step) -> (batch, key)``.

  With ``members`` (an ensemble), ``perm`` and ``base_key`` have a leading
  member axis, and so do the batch and the key returned.
  """

  def gather(images, labels, perm, index, base_key, step):
    rows = jax.lax.dynamic_slice_in_dim(perm, index * batch_size, batch_size)
    key = jax.random.fold_in(base_key, step)
    batch = {"image": images[rows], "label": labels[rows]}
    if batch_fn is not None:
      batch = batch_fn(batch, jax.random.fold_in(key, 1))
    return batch, key

  if members is None:
    out_shardings = (sharding.batch_sharded(mesh), sharding.replicated(mesh))
  else:
    gather = jax.vmap(gather, in_axes=(None, None, 0, None, 0, None))
    key_sharding, batch_sharding = ensemble.shardings(members, mesh)
    out_shardings = (batch_sharding, key_sharding)
  gather = jax.jit(gather, out_shardings=out_shardings)
  images = sharding.replicate(images, mesh)
  labels = sharding.replicate(labels, mesh)
  return lambda perm, index, key, step: gather(images, labels, perm, index,
                                               key, step)


# rows int [n] -> (images uint8 [n, H, W, C], labels [n] or [n, K]).
RowReader = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class _HostBatcher:
  """Like :func:`_device_batcher`, for multi-host jobs and streaming data.

  Each process reads its share of every global batch (the rows of
  :func:`sharding.process_batch_rows`) with ``read_rows`` and contributes it
  with ``make_array_from_process_local_data``. A background thread reads and
  transfers the next ``prefetch`` batches while the current step runs.
  """

  def __init__(self, read_rows: RowReader, batch_size: int, mesh: Mesh,
               batch_fn: BatchFn | None, prefetch: int):
    self._read_rows, self._batch_size, self._mesh = read_rows, batch_size, mesh
    self._rows_fed = sharding.process_batch_rows(mesh, batch_size)
    self._prefetch = prefetch
    self._executor = futures.ThreadPoolExecutor(max_workers=1)
    self._pending: dict[int, futures.Future] = {}
    self._perm, self._host_perm = None, None

    def finish(batch, base_key, step):
      key = jax.random.fold_in(base_key, step)
      if batch_fn is not None:
        batch = batch_fn(batch, jax.random.fold_in(key, 1))
      return batch, key

    self._finish = jax.jit(finish, out_shardings=(
        sharding.batch_sharded(mesh), sharding.replicated(mesh)))

  def _load(self, host_perm: np.ndarray, index: int) -> dict[str, jax.Array]:
    images, labels = self._read_rows(
        host_perm[index * self._batch_size + self._rows_fed])
    return sharding.host_local_batch({"image": images, "label": labels},
                                     self._mesh)

  def _cancel_pending(self) -> None:
    for pending in self._pending.values():
      pending.cancel()
    self._pending = {}

  def __call__(self, perm, index, base_key, step):
    if self._perm is not perm:
      self._cancel_pending()
      self._perm, self._host_perm = perm, np.asarray(perm)
    batches = self._host_perm.shape[0] // self._batch_size
    for ahead in range(index, min(index + 1 + self._prefetch, batches)):
      if ahead not in self._pending:
        self._pending[ahead] = self._executor.submit(
            self._load, self._host_perm, ahead)
    return self._finish(self._pending.pop(index).result(), base_key, step)

  def close(self) -> None:
    self._cancel_pending()
    self._executor.shutdown(wait=True)


def _row_reader(train_data: Dataset | StreamingDataset,
                targets: np.ndarray | None) -> RowReader:
  """Reads examples of ``train_data``, their labels replaced by
  ``targets`` when given."""
  if targets is None:
    return train_data.read
  return lambda rows: (train_data.read(rows)[0], targets[rows])


def checkpoint_identity(identity: Mapping[str, Any] | None,
                        train_data: Dataset | StreamingDataset,
                        labels: np.ndarray | None,
                        batch_size: int,
                        members: np.ndarray | None = None) -> dict[str, Any]:
  """The identity record :func:`fit` keeps in its checkpoints.

  ``identity`` (what the caller knows determines the run), the code
  versions, the batch size and the identity of the training data actually
  given: its images and ``labels`` (the targets; None: the dataset's), by
  SHA-256 (of a streaming dataset, its source, overlay and targets, see
  :meth:`StreamingDataset.identity`), and an ensemble's ``members``.
  """
  if isinstance(train_data, StreamingDataset):
    data = train_data.identity(labels)
  else:
    data = identity_lib.dataset_identity(train_data, labels)
  return identity_lib.canonical({
      **identity_lib.code_versions(), "batch_size": batch_size,
      "train_data": data,
      **({} if members is None else {"members": array_digest(members)}),
      **(identity or {})})


def _feed(feed: str, streaming: bool, members: np.ndarray | None) -> str:
  """The feed ``"auto"`` stands for, after checking ``feed``."""
  if feed == "auto":
    feed = "device" if jax.process_count() == 1 and not streaming else "host"
  if feed not in ("device", "host"):
    raise ValueError(f"feed must be 'device', 'host' or 'auto', got {feed!r}.")
  if feed == "device" and streaming:
    raise ValueError("a StreamingDataset is read on the host; use "
                     "feed='host' or feed='auto'.")
  if members is not None and feed != "device":
    raise ValueError(
        f"an ensemble trains on an in-memory Dataset fed from the devices; "
        f"got feed={feed!r} on {jax.process_count()} process(es): use "
        "feed='device' on one process.")
  return feed


def _member_rows(members: np.ndarray | None, num_examples: int) -> np.ndarray:
  """int32 [M] (one model: every example) or [E, M] rows of each member."""
  if members is None:
    return np.arange(num_examples, dtype=np.int32)
  members = np.asarray(members)
  if (members.ndim != 2 or not np.issubdtype(members.dtype, np.integer) or
      (members.size and (members.min() < 0 or
                         members.max() >= num_examples))):
    raise ValueError(
        f"members must be int [E, M] indices into the {num_examples} "
        f"training examples, got {members.dtype} {members.shape}.")
  return members.astype(np.int32)


def fit(step_fn: StepFn, state: TrainState,
        train_data: Dataset | StreamingDataset, *,
        batch_size: int, num_epochs: int, data_rng: jax.Array,
        targets: np.ndarray | None = None,
        mesh: Mesh | None = None,
        workdir: str | None = None,
        identity: Mapping[str, Any] | None = None,
        checkpoint_every_epochs: int = 1,
        log_every_steps: int = 100,
        feed: str = "auto",
        batch_fn: BatchFn | None = None,
        on_epoch_end: Callable[[int, TrainState], Any] | None = None,
        progress_bar: bool | None = None,
        learning_rate: LearningRate | None = None,
        members: np.ndarray | None = None,
        prefetch: int = 2,
        saved_with: Mapping[str, Any] | None = None,
        name: str | None = None) -> TrainState:
  """Trains ``state`` for ``num_epochs`` epochs over ``train_data``.

  Args:
    step_fn: from :func:`jaxwm.train.make_train_step` (same ``mesh``).
    state: the initial state; replaced by the last checkpoint in ``workdir``
      when one exists and was made by this run (resumption).
    train_data: the training set, in memory or streamed from a source
      (:class:`jaxwm.data.streaming.StreamingDataset`); the last partial
      batch of an epoch is dropped.
    batch_size: the global batch size, a multiple of the mesh's devices.
    num_epochs: total epochs (including those already done when resuming).
    data_rng: uint32 [2] key for the epoch permutations ([E, 2], one per
      member, for an ensemble); the step keys are
      ``fold_in(state.rng, step)``.
    targets: optional labels replacing ``train_data.labels``: int [N] or soft
      float [N, K] (distillation, label- and logit-query stealing).
    mesh: the device mesh; defaults to all devices.
    workdir: where checkpoints go; None disables checkpointing.
    identity: what determines the run besides its data (config fields,
      seeds, initial variables, custom functions: see
      :func:`jaxwm.train.recipe.run_identity`). With ``workdir``, each
      checkpoint records it in :func:`checkpoint_identity`, and a resume
      compares the latest checkpoint's record field by field with this
      run's first: any difference, a checkpoint without a record, or one
      trained past ``num_epochs`` raises
      :class:`jaxwm.identity.StaleRunError` and nothing is restored.
    checkpoint_every_epochs: save every this many epochs and at the end.
    log_every_steps: progress line interval (the only host synchronisation).
    feed: ``"device"`` (dataset in device memory), ``"host"`` (per-process
      batches read on the host, for multi-host jobs and streaming data) or
      ``"auto"`` (device for in-memory data on one process).
    batch_fn: optional on-device transform of each gathered batch.
    on_epoch_end: called as ``on_epoch_end(epoch, state)`` after each epoch.
    progress_bar: show a tqdm bar; default: when stderr is a terminal or in
      a notebook.
    learning_rate: the optimizer's learning rate (a number or a schedule of
      the 0-based step), named in the error of a diverged run.
    members: trains an ensemble (a ``step_fn`` built with ``ensemble``, a
      stacked ``state``, see :mod:`jaxwm.train.ensemble`): int [E, M], the
      rows of ``train_data`` that each member trains on (each has its own
      permutation of its own M rows each epoch, exactly as alone on
      ``train_data.take(members[e])``). None: one model on every row.
    prefetch: with the host feed, how many batches are read and sent to the
      devices ahead of the step that uses them.
    saved_with: JSON metadata each checkpoint keeps beside the identity,
      not compared on resume (e.g. the model's
      :class:`jaxwm.train.trained_model.ModelSpec`, which
      :func:`jaxwm.train.saved_model.load_model` rebuilds it from).
    name: the model's name in the progress lines and in the run log's
      curves (:mod:`jaxwm.monitor`); default the ``workdir`` folder's name.

  Returns:
    The trained state.

  Raises:
    TrainingDivergedError: a loss was NaN or infinite. It is detected at the
      next progress line or epoch end and names the exact first step; no
      checkpoint or ``on_epoch_end`` call sees the diverged state.
  """
  mesh = sharding.make_mesh() if mesh is None else mesh
  sharding.check_batch_size(batch_size, mesh)
  streaming = isinstance(train_data, StreamingDataset)
  feed = _feed(feed, streaming, members)
  num_examples = len(train_data)
  rows = _member_rows(members, num_examples)
  steps_per_epoch = rows.shape[-1] // batch_size
  if steps_per_epoch == 0:
    raise ValueError(
        f"batch size {batch_size} exceeds the {rows.shape[-1]} training "
        "examples; use a smaller batch size.")
  if targets is not None:
    targets = np.asarray(targets)
    if targets.shape[0] != num_examples:
      raise ValueError(f"targets have {targets.shape[0]} rows, expected "
                       f"{num_examples} (one per training example).")
  if feed == "device":
    batcher = _device_batcher(
        train_data.images, train_data.labels if targets is None else targets,
        batch_size, mesh, batch_fn, None if members is None else rows.shape[0])
  else:
    batcher = _HostBatcher(_row_reader(train_data, targets), batch_size, mesh,
                           batch_fn, prefetch)
  try:
    return _train(step_fn, state, batcher, rows, mesh=mesh,
                  batch_size=batch_size, num_epochs=num_epochs,
                  data_rng=data_rng, workdir=workdir,
                  checkpoint_every_epochs=checkpoint_every_epochs,
                  log_every_steps=log_every_steps, on_epoch_end=on_epoch_end,
                  progress_bar=progress_bar, learning_rate=learning_rate,
                  saved_with=saved_with, name=name,
                  identity=None if workdir is None else checkpoint_identity(
                      identity, train_data, targets, batch_size, members))
  finally:
    if isinstance(batcher, _HostBatcher):
      batcher.close()


def _train(step_fn: StepFn, state: TrainState, batcher, rows: np.ndarray, *,
           mesh: Mesh, batch_size: int, num_epochs: int, data_rng: jax.Array,
           workdir: str | None, identity: dict[str, Any] | None,
           checkpoint_every_epochs: int, log_every_steps: int,
           on_epoch_end, progress_bar: bool | None,
           learning_rate: LearningRate | None,
           saved_with: Mapping[str, Any] | None,
           name: str | None) -> TrainState:
  """The loop of :func:`fit` over ``batcher``'s batches: ``rows`` is int
  [M] or, for an ensemble, [E, M]; ``identity`` the checkpoint record."""
  members = rows.shape[0] if rows.ndim == 2 else None
  steps_per_epoch = rows.shape[-1] // batch_size
  if members is None:
    state_sharding = sharding.replicated(mesh)
  else:
    state_sharding = ensemble.shardings(members, mesh)[0]
  state = jax.device_put(state, state_sharding)
  checkpointer = Checkpointer(workdir) if workdir else None
  start_epoch, run_info = 0, {}
  if checkpointer is not None:
    run_info = {**(saved_with or {}), "identity": identity}
    try:
      state, start_epoch = checkpointer.resume(
          state, identity, progress="epoch", limit=num_epochs,
          limit_name="num_epochs", what="the checkpoint")
    except BaseException:
      checkpointer.close()
      raise

  base_key = jnp.array(state.rng)  # a separate buffer: state is donated.

  def permutation(key, epoch, rows):
    return rows[jax.random.permutation(jax.random.fold_in(key, epoch),
                                       rows.shape[0])]

  if members is not None:
    permutation = jax.vmap(permutation, in_axes=(0, None, 0))
  permute = jax.jit(permutation, out_shardings=sharding.replicated(mesh))
  rows = sharding.replicate(rows, mesh)
  total_steps = steps_per_epoch * num_epochs
  first_step = start_epoch * steps_per_epoch
  log = run_log.current()
  progress = _Progress(
      total_steps, first_step, batch_size * (members or 1), log_every_steps,
      progress_bar,
      None if log is None else log.track_model(
          name or (os.path.basename(os.path.normpath(workdir))
                   if workdir else None),
          total_steps, first_step, steps_per_epoch, models=members or 1))
  guard = _DivergenceGuard(steps_per_epoch, learning_rate)
  in_flight = dispatch.DispatchWindow()
  try:
    for epoch in range(start_epoch, num_epochs):
      perm = permute(data_rng, epoch, rows)
      for index in range(steps_per_epoch):
        global_step = epoch * steps_per_epoch + index
        batch, key = batcher(perm, index, base_key, global_step)
        state, metrics = step_fn(state, batch, key)
        in_flight.push(metrics["loss"])
        guard.update(global_step, metrics["loss"])
        if progress.update(global_step + 1, metrics,
                           force=index == steps_per_epoch - 1):
          guard.check()
      if on_epoch_end is not None:
        on_epoch_end(epoch + 1, state)
      if checkpointer is not None and (
          (epoch + 1) % checkpoint_every_epochs == 0 or
          epoch + 1 == num_epochs):
        checkpointer.save((epoch + 1) * steps_per_epoch, state,
                          {"epoch": epoch + 1, **run_info})
  finally:
    progress.close()
    if checkpointer is not None:
      checkpointer.close()
  return state


def predict_logits(predict_fn, variables: Any, images: np.ndarray,
                   batch_size: int = 1000,
                   mesh: Mesh | None = None) -> np.ndarray:
  """Logits [N, K] for uint8 or float images [N, H, W, C], batched.

  The last batch is padded to full size so that one compiled shape serves
  every batch. ``predict_fn`` comes from :func:`jaxwm.train.make_predict_fn`.
  """
  mesh = sharding.make_mesh() if mesh is None else mesh
  batch_size = -(-batch_size // mesh.devices.size) * mesh.devices.size
  num = images.shape[0]
  outputs = []
  in_flight = dispatch.DispatchWindow()
  for start in range(0, num, batch_size):
    chunk = images[start:start + batch_size]
    pad = batch_size - chunk.shape[0]
    if pad:
      chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]),
                                              chunk.dtype)])
    chunk = jax.device_put(chunk, sharding.batch_sharded(mesh))
    outputs.append(predict_fn(variables, chunk))
    in_flight.push(outputs[-1])
  logits = np.concatenate([np.asarray(o) for o in outputs])
  return logits[:num]


def evaluate(predict_fn, variables: Any, dataset: Dataset,
             batch_size: int = 1000, mesh: Mesh | None = None
             ) -> dict[str, float]:
  """Accuracy and mean cross-entropy of a model on ``dataset``."""
  logits = predict_logits(predict_fn, variables, dataset.images, batch_size,
                          mesh)
  log_probs = jax.nn.log_softmax(jnp.asarray(logits, jnp.float32))
  loss = -jnp.mean(jnp.take_along_axis(
      log_probs, jnp.asarray(dataset.labels)[:, None], axis=1))
  accuracy = np.mean(np.argmax(logits, axis=1) == dataset.labels)
  return {"accuracy": float(accuracy), "loss": float(loss)}
