"""Crafted poisons: ``--config=configs/craft_poison.py:VARIANT``.

VARIANT is a method followed by the variant of ``configs/train.py`` (a
dataset, optionally a model, optionally ``runlocal``), e.g.
``availability,fashion_mnist``, ``ubw_c,fashion_mnist,cnn,runlocal``.
Methods:

* ``availability`` (Fowl et al.): eps = 8/255 (``--config.poison.epsilon=16``
  for 16/255), 240 signed-Adam steps, 8 restarts, differentiable shift and
  flip while crafting (Section 3.1); the surrogate and the victims train
  40 epochs (Appendix A.2) whatever the recipe's default;
* ``tensorclog`` and ``random_noise``: the baselines of Section 3.3 with
  the same budget and recipe;
* ``ubw_c`` (UBW paper, Appendix B-C.1): gamma = 0.1, source class 0,
  lambda = 2, eps = 16/255, 5 rounds of 40 crafting steps with the
  surrogate retrained from scratch between rounds;
* ``sleeper_agent``: the same, targeted at label 1, perturbing only
  target-class images; ``watermark.craft_patch_positions="random"`` crafts
  against the patch at a random place in each target image (docs/poisons.md
  has the class pairs measured on Fashion-MNIST: T-shirt -> Pullover,
  ``--config.watermark.target_label=2 --config.poison.epsilon=24``, plants
  the backdoor in 12-epoch victims on five seeds in six).

``poison.epsilon`` and ``defense.noise_epsilon`` are in units of 1/255. The
surrogate, every retrained surrogate and the victims use the ``train``
recipe of ``configs/train.py``; ``poison.surrogate_epochs``
(``--config.poison.surrogate_epochs="(2,5,10,20,40)"``) aligns the
availability poisons against the surrogate's checkpoints after those
epochs in turn instead of the trained surrogate alone;
``poison.retrain_every`` > 0 (``--config.poison.retrain_every=25``) gives
the availability poisons bi-level rounds too, retraining the surrogate from
scratch on the current poison every that many steps (on Fashion-MNIST at
16/255 they double what the poison costs a 40-epoch victim, 43.3 points
against 21.5; docs/poisons.md); ``victim`` changes the victims' recipe
alone where set (``--config.victim.num_epochs=40``,
``--config.victim.augment.flip=False``),
reusing the surrogate and the poison, and ``victim.init="surrogate"``
starts the victims from the surrogate's initialisation and data order
instead of their own (the most favourable victim for the poison);
``defense`` selects a training-time defence for the victims (Fowl et al.,
Table 5): ``gaussian_smoothing``, ``additive_noise`` or ``dp_sgd``.
"""

from __future__ import annotations

import ml_collections

from configs import train as train_configs
from jaxwm.verify.levels import DEFAULT_ALPHA

AVAILABILITY = ("availability", "tensorclog", "random_noise")
WATERMARKS = ("ubw_c", "sleeper_agent")
METHODS = AVAILABILITY + WATERMARKS
DEFENSES = ("none", "gaussian_smoothing", "additive_noise", "dp_sgd")


def poison_config(method: str) -> ml_collections.ConfigDict:
  """The crafting loop's settings (fields of ``crafting.CraftConfig``)."""
  watermark = method in WATERMARKS
  return ml_collections.ConfigDict(dict(
      epsilon=16 if watermark else 8,
      steps=200 if watermark else 240,
      restarts=1 if watermark else 8,
      learning_rate=0.025,
      milestones=(3 / 8, 5 / 8, 7 / 8),
      gamma=0.1,
      batch_size=128,
      augment=dict(shift=2, flip=True),
      independent=False,
      regularizers=dict(l2=0.0, tv=0.0, ssim=0.0),
      retrain_every=40 if watermark else 0,
      checkpoint_every=10,
      log_every=10,
      # Availability: share of the training set for the target gradient.
      target_fraction=1.0,
      # Availability and TensorClog: align against the surrogate's
      # checkpoints after these epochs in turn (an ensemble); () aligns
      # against the trained surrogate alone.
      surrogate_epochs=(),
  ))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  method, rest = train_configs.split_variant(
      arg, METHODS,
      "availability,fashion_mnist or availability,digits,runlocal")
  config = train_configs.base_config(rest, method)
  runlocal = "runlocal" in rest.split(",")
  config.method = method
  config.poison = poison_config(method)
  if method in AVAILABILITY and not runlocal:
    # The poison costs a victim more the longer it trains (docs/poisons.md:
    # 21.5 points at 40 epochs, 12.1 at 12 on Fashion-MNIST).
    config.train.num_epochs = 40
  config.watermark = ml_collections.ConfigDict(dict(
      poison_rate=0.1, source_class=0, target_label=1, lam=2.0,
      selection="gradient_norm", selection_batch_size=64,
      patch_size=ml_collections.config_dict.placeholder(int),
      patch_pattern="checkerboard", craft_patch_positions="fixed"))
  # Independent-T queries the watermarked model with a different trigger.
  config.independent_trigger = ml_collections.ConfigDict(dict(
      patch_position=(0, 0), patch_pattern="white"))
  config.verify = ml_collections.ConfigDict(dict(m=100, tau=0.25, seed=0,
                                                  alpha=DEFAULT_ALPHA))
  # The victims' recipe is config.train with the fields set here replaced.
  placeholder = ml_collections.config_dict.placeholder
  config.victim = ml_collections.ConfigDict(dict(
      init="own",
      num_epochs=placeholder(int),
      augment=dict(shift=placeholder(int), flip=placeholder(bool),
                   erasing=placeholder(float))))
  config.defense = ml_collections.ConfigDict(dict(
      name="none", smoothing_radius=2, smoothing_sigma=1.0, noise_epsilon=8,
      dp_l2_clip=0.1, dp_noise_multiplier=0.01))
  if runlocal:
    config.poison.steps = 4
    config.poison.restarts = 1
    config.poison.retrain_every = 2 if method in WATERMARKS else 0
    config.poison.checkpoint_every = 2
    config.poison.log_every = 1
    config.verify.m = 20
  return config
