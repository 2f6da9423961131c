"""How far an availability poison's alignment carries from the surrogate to a
victim trained from scratch.

An availability poison (Fowl et al., Eq. 3) is crafted so that, at the
surrogate's parameters theta_s, the training gradient of the released data
points along the gradient of the reverse cross-entropy on the clean data
(Eq. 4). A victim never sits at theta_s: it starts from its own random
initialisation and the poison harms it only as far as the two gradients
stay aligned at the parameters theta_t it passes through. This module
measures that, at any parameters theta:

* ``alignment``: A(theta) = 1 - cos(grad L(S + Delta; theta),
  grad L'(S; theta)), the poison's own objective (0: a step on the released
  data is a step that unlearns the clean data; 1: orthogonal);
* ``clean_alignment``: 1 - cos(grad L(S + Delta; theta), grad L(S; theta)),
  how far a step on the released data is still a step on the clean task
  (near 0: the victim learns the clean task anyway).

Neither has a fixed value on clean data: per sample the reverse
cross-entropy's gradient in the logits, p_y / (1 - p_y) (e_y - p), is the
cross-entropy's, p - e_y, reversed, but the weights p_y / (1 - p_y) differ
between samples, so the sums over the set need not be opposite; the
``random_noise`` poison's curve is the baseline to compare with.

:func:`alignment_curve` trains a victim on the released set and records
both, with its test accuracy, after every epoch.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
from absl import logging
from jax.sharding import Mesh

from jaxwm import identity
from jaxwm.data.dataset import Dataset
from jaxwm.alignment import objective
from jaxwm.train import loop, losses, recipe, sharding
from jaxwm.train import step as step_lib

# variables -> {"alignment": float, "clean_alignment": float}
Probe = Callable[[Any], dict[str, float]]
CURVE_FILE = "alignment_curve.json"


def alignment_probe(model, released: Dataset, clean: Dataset, *,
                    batch_size: int, mesh: Mesh | None = None) -> Probe:
  """A function of the model's variables measuring the poison's alignment.

  The three full-set gradients (released data under cross-entropy, clean
  data under reverse cross-entropy and under cross-entropy) are
  accumulated on the devices by the targets of
  :mod:`jaxwm.alignment.objective`; each set is uploaded once and stays there
  between calls.

  Args:
    model: a jaxwm model.
    released: the poisoned training set S + Delta (images uint8 [N, H, W, C]).
    clean: the clean training set S.
    batch_size: rows per gradient batch, a multiple of the mesh's devices.
    mesh: device mesh; default all devices.
  """
  mesh = sharding.make_mesh() if mesh is None else mesh

  def upload(data: Dataset):
    return objective.upload_target_set(data.images, data.labels,
                                       batch_size=batch_size, mesh=mesh)

  released_batches, clean_batches = upload(released), upload(clean)
  released_gradient = objective.target_on_batches(
      model, released_batches, losses.cross_entropy, mesh)
  reverse_gradient = objective.target_on_batches(
      model, clean_batches, objective.reverse_cross_entropy, mesh)
  clean_gradient = objective.target_on_batches(
      model, clean_batches, losses.cross_entropy, mesh)

  @jax.jit
  def alignments(gradient, reverse, clean_grad):
    return (objective.alignment_loss(gradient, reverse),
            objective.alignment_loss(gradient, clean_grad))

  def probe(variables: Any) -> dict[str, float]:
    params = variables["params"]
    model_state = {k: v for k, v in variables.items() if k != "params"}
    # Eager arithmetic on the replicated gradients while their accumulations
    # were still in flight aborted XLA's CPU runtime (JAX 0.10.2, 8 fake
    # devices, 3 runs of 3): each full gradient is awaited, and the cosines
    # are one compiled function (either change alone removed the abort).
    gradients = [jax.block_until_ready(full(params, model_state))
                 for full in (released_gradient, reverse_gradient,
                              clean_gradient)]
    value, clean_value = jax.device_get(alignments(*gradients))
    return {"alignment": float(value), "clean_alignment": float(clean_value)}

  return probe


def alignment_curve(config, released: Dataset, clean: Dataset, test: Dataset,
                    *, stream: int, folder: str,
                    mesh: Mesh | None = None) -> list[dict[str, float]]:
  """Trains a victim on ``released`` and probes it after every epoch.

  The victim is the one :func:`jaxwm.train.recipe.train_model` trains with
  ``config`` and ``stream`` (same initialisation, data order and
  augmentation), so its last point's accuracy is that victim's. It is
  trained in one go without checkpoints (the probe must see every epoch);
  the finished curve is kept in ``folder`` with the identity of the victim
  and of the three datasets, and a rerun with the same reads it back (with
  others, it raises :class:`jaxwm.identity.StaleRunError`).

  Args:
    config: a config with the fields of ``configs/train.py`` (the victims'
      recipe).
    released: the poisoned training set.
    clean: the clean training set.
    test: the test set.
    stream: the engine's key stream of the victim.
    folder: where the curve is kept (:data:`CURVE_FILE`).
    mesh: device mesh; default all devices.

  Returns:
    One dict per epoch: ``epoch``, ``alignment``, ``clean_alignment``,
    ``test_accuracy``.
  """
  path = os.path.join(folder, CURVE_FILE)
  record = recipe.measurement_identity(config, stream, released=released,
                                       clean=clean, test=test)
  kept = identity.read_json(path, record, what="the alignment curve")
  if kept is not None:
    return kept
  mesh = sharding.make_mesh() if mesh is None else mesh
  model = recipe.build_model(config, released.num_classes)
  probe = alignment_probe(model, released, clean,
                          batch_size=config.train.batch_size, mesh=mesh)
  predict_fn = step_lib.make_predict_fn(model, mesh)
  points = []

  def measure(epoch: int, state) -> None:
    variables = state.variables()
    point = {"epoch": epoch, **probe(variables),
             "test_accuracy": loop.evaluate(
                 predict_fn, variables, test, config.eval_batch_size,
                 mesh)["accuracy"]}
    logging.info("alignment curve: %s", point)
    points.append(point)

  recipe.train_model(config, released, stream=stream, on_epoch_end=measure,
                     mesh=mesh)
  identity.write_json(path, record, points)
  return points
