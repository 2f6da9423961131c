"""Dataset watermark and ownership verification:
``--config=configs/dataset_watermark.py:VARIANT``.

VARIANT is a watermark (``badnets``, ``blended``, ``wanet``,
``label_consistent``, ``ubw_p``) followed by the variant of
``configs/train.py`` (a dataset, optionally a model, optionally
``runlocal``) and optionally ``demo``, e.g. ``ubw_p,fashion_mnist``,
``ubw_p,fashion_mnist,demo``, ``badnets,tfds:cifar10,resnet18`` or
``ubw_p,digits,runlocal``.

The watermark settings follow the UBW paper (Section 5.1-5.2, Appendix
C.1): poisoning rate 0.1, target label y_t = 1 for the targeted
watermarks, UBW-P's random labels drawn independently and uniformly
(``watermark.label_draw="independent"``; ``"balanced"`` is an ablation),
the white-black BadNets square for BadNets, Label-Consistent and UBW-P,
blend ratio 0.1, WaNet k = 4, s = 0.5 with its noise mode,
Label-Consistent PGD eps 16/255, step 1.5/255, 30 steps. Every class is
poisoned.

Evaluation and verification follow the paper's evaluation (Appendix C.2):
ASR-A, ASR-C and D_p are measured on, and the m = 100 verification images
sampled from, the triggered test images of the source classes
``verify.source_classes`` = (0,), a class other than the target; the
results also give them over every class the watermark acts on
(``all_classes``). tau = 0.25; each scenario's decision is taken at
``verify.alpha`` = 0.01. Independent-T is the paper's (the watermarked
model queried with the trigger of ``independent_trigger``);
``verify.independent_trigger_model`` adds the scenario of a model trained
with that other trigger and queried with ours
(:mod:`jaxwm.recipes.scenarios`).

Every model (benign, watermarked, watermarked with an independent trigger)
is trained with the same recipe, as the threat model demands (Section 3.1:
the owner controls only the data), with the paper's augmentation
(Appendix C.1: the trigger is added before horizontal flipping, the only
augmentation):

* ResNet, VGG and WRN: the paper's recipe (Appendix C.1): 200 epochs of SGD
  (momentum 0.9, weight decay 5e-4, learning rate 0.1, divided by 10 at
  epochs 150 and 180), batch size 128.
* The small CNN (the CPU recipe): a stratified 10% of the training set
  (6,000 Fashion-MNIST images; the test set stays whole), width 16, 100
  epochs, learning rate 0.05 divided by 10 after epoch 10. UBW-P's
  dispersibility needs the model to fit the random labels of the poisoned
  samples, which the paper's 200 epochs do and a 12-epoch run does not;
  this is the cheapest recipe found that does (docs/results.md, "UBW-P
  dispersibility"). Train on all of it with ``--config.train_fraction=1``.
* ``demo`` (the README's first command): the CNN recipe cut to 40 epochs,
  without the independent-trigger model (two models: benign and
  watermarked); a few minutes on a CPU. Its models have fitted fewer of
  the random labels than the 100-epoch recipe's, so its D_p is lower.
* ``digits`` and ``runlocal``: the recipe of ``configs/train.py``
  (``runlocal`` with a constant learning rate).
"""

from __future__ import annotations

import ml_collections

from configs import train as train_configs
from jaxwm.verify.levels import DEFAULT_ALPHA

POISONED_LABEL = ("badnets", "blended", "wanet", "ubw_p")
# Section 5.2: "The target label y_t is set to 1 for all targeted
# watermarks"; the paper's evaluation measures source class 0.
TARGET_LABEL = 1
SOURCE_CLASSES = (0,)
DEMO = "demo"
DEMO_EPOCHS = 40
METHODS = POISONED_LABEL + ("label_consistent",)
PATCH_METHODS = ("badnets", "ubw_p", "label_consistent")


def cnn_recipe(config: ml_collections.ConfigDict) -> None:
  """The small CNN's CPU recipe (module docstring), in place."""
  config.train_fraction = 0.1
  config.model_kwargs.width = 16
  config.train.num_epochs = 100
  config.train.schedule = "step"
  config.train.milestones = (10,)


def paper_recipe(config: ml_collections.ConfigDict) -> None:
  """The UBW paper's recipe (Appendix C.1), in place."""
  config.train.num_epochs = 200
  config.train.learning_rate = 0.1
  config.train.schedule = "step"
  config.train.milestones = (150, 180)


def watermark_config(method: str) -> ml_collections.ConfigDict:
  """The ``watermark`` block: the fields of the method's mark config."""
  block = dict(method=method, poison_rate=0.1)
  if method != "ubw_p":
    block.update(target_label=TARGET_LABEL)
  if method in PATCH_METHODS:
    # None: 3 px at 32x32, scaled with the image side.
    block.update(patch_size=ml_collections.config_dict.placeholder(int))
  if method == "ubw_p":
    block.update(label_draw="independent")
  elif method == "blended":
    block.update(blend_alpha=0.1)
  elif method == "wanet":
    block.update(wanet_k=4, wanet_s=0.5, wanet_noise=True)
  elif method == "label_consistent":
    block.update(epsilon=16 / 255, step_size=1.5 / 255, steps=30)
  return ml_collections.ConfigDict(block)


def independent_trigger(method: str) -> ml_collections.ConfigDict:
  """Overrides of the ``watermark`` block giving a different trigger: the
  one Independent-T queries the watermarked model with, and the one the
  independent-trigger model is trained with.

  Patch watermarks move a white square to the top-left corner; Blended and
  WaNet draw their pattern or warping field from a different key.
  """
  if method in PATCH_METHODS:
    return ml_collections.ConfigDict(dict(patch_position=(0, 0),
                                          patch_pattern="white"))
  return ml_collections.ConfigDict()


def demo_recipe(config: ml_collections.ConfigDict) -> None:
  """The ``demo`` variant (module docstring), in place."""
  config.train.num_epochs = DEMO_EPOCHS
  config.train.checkpoint_every_epochs = 10
  config.verify.independent_trigger_model = False


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  method, rest = train_configs.split_variant(
      arg, METHODS, "ubw_p,fashion_mnist or ubw_p,digits,runlocal")
  parts = rest.split(",")
  demo = DEMO in parts
  rest = ",".join(part for part in parts if part != DEMO)
  config = train_configs.base_config(rest, method)
  runlocal = "runlocal" in parts
  config.train.augment.shift = 0
  config.train.augment.flip = config.dataset != "digits"
  if not runlocal and config.dataset != "digits":
    (cnn_recipe if config.model == "cnn" else paper_recipe)(config)
  config.watermark = watermark_config(method)
  config.independent_trigger = independent_trigger(method)
  config.verify = ml_collections.ConfigDict(dict(
      m=100, tau=0.25, seed=0, alpha=DEFAULT_ALPHA, source_classes=SOURCE_CLASSES,
      independent_trigger_model=True))
  if demo:
    demo_recipe(config)
  config.ablation = ablation_config(runlocal)
  if runlocal:
    config.verify.m = 20
    # No decay over the one epoch: a schedule that does not depend on the
    # number of epochs, as experiments/ablate_ubw_p.py's curves need.
    config.train.schedule = "constant"
  return config


def ablation_config(runlocal: bool) -> ml_collections.ConfigDict:
  """``experiments/ablate_ubw_p.py``: UBW-P D_p against epochs, per arm.

  Each arm is the UBW-P experiment's watermarked model with another CNN
  ``width`` and ``label_draw``, measured after each count in ``epochs``
  (the recipe's schedule must not depend on the total number of epochs;
  the CNN recipe's does not). ``only`` (a comma list of arm names, empty
  for all) lets several processes share the arms.
  """
  arms = {
      "cnn16_balanced": dict(width=16, label_draw="balanced"),
      "cnn16_independent": dict(width=16, label_draw="independent"),
      "cnn32_balanced": dict(width=32, label_draw="balanced"),
      "cnn32_independent": dict(width=32, label_draw="independent"),
  }
  return ml_collections.ConfigDict(dict(
      epochs=(1, 2) if runlocal else (5, 10, 15, 20, 30, 40, 60, 80, 100),
      arms=arms,
      only="",
  ))
