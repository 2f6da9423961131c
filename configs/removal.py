"""Watermark removal and backdoor detection:
``--config=configs/removal.py:VARIANT``.

VARIANT is a watermark row followed by the variant of ``configs/train.py``
(a dataset, optionally a model, optionally ``runlocal``), e.g.
``ubw_p,fashion_mnist``, ``content,fashion_mnist`` or
``badnets,digits,runlocal``. Rows:

* ``badnets``, ``ubw_p``: the dataset watermarks of
  ``configs/dataset_watermark.py`` (same recipe, same models: a shared
  ``--workdir`` reuses them);
* ``ubw_c``: the clean-label dataset watermark of
  ``configs/craft_poison.py`` (its crafted poison and victim);
* ``adi``: the Adi et al. model watermark of ``configs/model_watermark.py``
  (FROMSCRATCH, on the owner's half of the training set);
* ``content``, ``noise``, ``unrelated``: the trigger sets of Zhang et al.
  (2018) on which WILD was evaluated: the text "TEST" stamped on images
  ("T" on digits' 8x8 images), a
  fixed Gaussian pattern (std 0.3) added to them, or scikit-learn digits
  resized to the task's images, 100 triggers labelled with class 1, 8 per
  training batch, verified as Adi's (a binomial test of the agreement
  against chance 1/K at ``watermark.alpha``);
* ``benign``: no watermark, the training recipe of ``configs/train.py``:
  only Neural Cleanse runs on it (a clean model should not be flagged).

The defender holds ``removal.clean_fraction`` = 10% of the images the model
was trained on (stratified, clean labels; UBW paper, Appendix C.3, and
WILD's setting) and applies each defense of ``removal.columns``
(settings in ``defenses``; the names and fields of
``jaxwm.defenses.repairs``):

* ``fine_tuning_fc``: the UBW paper's fine-tuning (Appendix C.3): the fully
  connected layers, learning rate 0.1, 100 epochs;
* ``fine_tuning_head`` (not among the default columns): the same on the
  classification layer alone, the paper's ResNet-18's only fully connected
  layer;
* ``fine_tuning_all``: every layer at WILD's learning rate, epochs and
  weight averaging (0.05, 10, the mean of the last 4 epochs): the plain
  fine-tuning WILD is compared with;
* ``pruning``: the last convolution's least active channels (a residual
  network's: its last stage's output channels) at rate
  ``defenses.pruning.settings.rate`` (0.5); ``removal.pruning_rates``
  (0%, 2%, ..., 98%, Appendix C.3) give the curve;
* ``fine_pruning``: pruning at 0.5, then 10 epochs of fine-tuning;
* ``wild_ce``, ``wild_js``: WILD with the cross-entropy and Jensen-Shannon
  divergence (lambda = 0.5 and 5 on the logits, Random Erasing of 2-33%
  of the image with aspect 0.3-3.3, 10 epochs at 0.05, constant, the
  weights averaged over the last 4);
* ``nad``, ``mcr``: neural attention distillation and mode connectivity
  repair with jaxwm's defaults (t = 0.5).

``detectors`` are the settings of ``jaxwm.defenses.detector_suite`` (Neural
Cleanse, and for dataset watermarks STRIP, Grad-CAM, spectral signatures
and activation clustering), run on the watermarked model unless
``removal.detectors`` is False (``--config.removal.detectors=False``: the
repairs alone, e.g. an ablation of WILD on new models).

``runlocal``: one epoch of everything (two, averaged, for WILD and the
all-layer fine-tuning), a narrow CNN (the pruning, NAD and Grad-CAM need
convolutions), half of the training images for the defender (the runlocal
training set holds a tenth of digits), two pruning rates and a few Neural
Cleanse steps.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from configs import craft_poison as craft_configs
from configs import dataset_watermark as dataset_configs
from configs import model_watermark as model_configs
from configs import train as train_configs
from jaxwm.config_checks.removal import (CRAFTED_ROWS, DATASET_ROWS,
                                         MODEL_ROWS, ROWS, TRIGGER_ROWS)
from jaxwm.defenses import detector_suite
from jaxwm.defenses import repairs
from jaxwm.verify.levels import DEFAULT_ALPHA

COLUMNS = ("fine_tuning_fc", "fine_tuning_all", "pruning", "fine_pruning",
           "wild_ce", "wild_js", "nad", "mcr")
# The trigger sets' target label, as the dataset watermarks' (y_t = 1).
TARGET_LABEL = 1
# lambda of WILD with the cross-entropy: the unbounded cross-entropy takes a
# tenth of the Jensen-Shannon default (5), chosen on seed 2's content and
# noise models (docs/defenses.md).
WILD_CE_WEIGHT = 0.5


def _row_config(row: str, rest: str) -> ml_collections.ConfigDict:
  """The config of the launcher that trains the ``row`` model."""
  if row in DATASET_ROWS:
    return dataset_configs.get_config(f"{row},{rest}")
  if row in CRAFTED_ROWS:
    return craft_configs.get_config(f"{row},{rest}")
  if row in MODEL_ROWS:
    config = model_configs.get_config(f"adi_fromscratch,{rest}")
    # The removal matrix replaces the Adi launcher's own attacks.
    for block in ("attack", "piracy", "transfer", "false_acceptance"):
      del config[block]
    return config
  config = train_configs.base_config(rest, row)
  if row in TRIGGER_ROWS:
    config.watermark = ml_collections.ConfigDict(dict(
        kind=row,
        target_label=TARGET_LABEL,
        num_triggers=100,
        triggers_per_batch=8,
        # None: a secret draw, saved in the workdir on the first run.
        trigger_seed=ml_collections.config_dict.placeholder(int),
        alpha=DEFAULT_ALPHA,
        eps=0.1,
    ))
    if row == "content":
      # One 3x5 glyph on a black margin fits digits' 8x8 images.
      config.watermark.text = "T" if config.dataset == "digits" else "TEST"
    elif row == "noise":
      config.watermark.noise_std = 0.3
  return config


def defenses_config() -> ml_collections.ConfigDict:
  """Each column's repair (a name of ``jaxwm.defenses.repairs``) and its
  settings: the repair's defaults with the column's overrides, every field
  given (so that each can be set with ``--config.defenses.COLUMN.settings.
  FIELD``)."""

  def column(repair: str, **overrides) -> dict:
    settings = repairs.make_settings(repair, overrides)
    return dict(repair=repair, settings=dataclasses.asdict(settings))

  return ml_collections.ConfigDict(dict(
      fine_tuning_fc=column("fine_tuning", layers="fc", learning_rate=0.1,
                            num_epochs=100),
      fine_tuning_head=column("fine_tuning", layers="head",
                              learning_rate=0.1, num_epochs=100),
      fine_tuning_all=column("fine_tuning", layers="all",
                             learning_rate=0.05, num_epochs=10,
                             average_epochs=4),
      pruning=column("pruning", rate=0.5),
      fine_pruning=column("fine_pruning"),
      wild_ce=column("wild", divergence="ce", weight=WILD_CE_WEIGHT),
      wild_js=column("wild", divergence="js"),
      nad=column("nad"),
      mcr=column("mcr"),
  ))


def _runlocal(config: ml_collections.ConfigDict) -> None:
  """The ``runlocal`` cuts (module docstring), in place."""
  config.model_kwargs.width = 4
  config.model_kwargs.dense_width = 16
  config.train.batch_size = 32
  config.removal.clean_fraction = 0.5
  config.removal.pruning_rates = (0.0, 0.5)
  defenses = config.defenses
  for name in ("fine_tuning_fc", "fine_tuning_head", "nad", "mcr"):
    defenses[name].settings.num_epochs = 1
  for name in ("fine_tuning_all", "wild_ce", "wild_js"):
    defenses[name].settings.update(num_epochs=2, average_epochs=2)
  defenses.fine_pruning.settings.fine_tune.num_epochs = 1
  defenses.nad.settings.teacher.num_epochs = 1
  defenses.mcr.settings.endpoints.num_epochs = 1
  defenses.mcr.settings.batch_stat_epochs = 1
  detectors = config.detectors
  detectors.num_images = 5
  detectors.neural_cleanse.update(num_epochs=2, steps_per_epoch=2,
                                  batch_size=8)
  detectors.strip.num_overlays = 10
  detectors.activation_clustering.update(reduction="pca", num_components=2)
  if "watermark" in config and "num_triggers" in config.watermark:
    config.watermark.num_triggers = 20


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  row, rest = train_configs.split_variant(
      arg, ROWS, "ubw_p,fashion_mnist or content,digits,runlocal")
  config = _row_config(row, rest)
  config.row = row
  config.removal = ml_collections.ConfigDict(dict(
      clean_fraction=0.1,
      columns=COLUMNS,
      detectors=True,
      pruning_rates=tuple(round(0.02 * i, 2) for i in range(50)),
  ))
  config.defenses = defenses_config()
  # jaxwm.defenses.detector_suite.DetectorSuiteConfig's fields.
  config.detectors = ml_collections.ConfigDict(
      dataclasses.asdict(detector_suite.DetectorSuiteConfig()))
  if "runlocal" in rest.split(","):
    _runlocal(config)
  return config
