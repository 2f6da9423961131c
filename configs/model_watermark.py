"""Adi et al. model watermark and its removal attacks:
``--config=configs/model_watermark.py:VARIANT``.

VARIANT is ``adi_fromscratch`` or ``adi_pretrained`` (for
``experiments/model_watermark.py``) or ``false_acceptance`` (for
``experiments/false_acceptance.py``) followed by the variant of
``configs/train.py`` (a dataset, optionally a model, optionally
``runlocal``), e.g. ``adi_fromscratch,fashion_mnist``,
``adi_pretrained,digits,runlocal`` or ``false_acceptance,fashion_mnist``
(200 small models: a CNN of width 8 trained 3 epochs, each on its own 10%
of the training set; on digits, 80% and the digits recipe).

The training recipe is that of ``configs/train.py`` with the paper's step
schedule (Section 4.6: the learning rate divided by ten after each third of
training) so that "the last learning rate that was used during training",
which every fine-tuning run uses, is well defined.

The removal attacker's budget is the paper's (Section 4.4: "the adversary
can fine-tune the models using the same amount of training instances and
epochs as in training the model"): the training set is split into two
disjoint halves (``attack.held_out_fraction=0.5``), the owner trains on one,
the attacker fine-tunes on the other for as many epochs
(``attack.num_epochs=None``), so both see as many distinct images, as
many times, in as many optimizer steps. The attacker never holds the
owner's images. ``--config.attack.held_out_fraction=0.2`` gives the
earlier, weaker attacker: a quarter of the owner's images, hence a quarter
of the steps.
"""

from __future__ import annotations

import ml_collections

from configs import train as train_configs
from jaxwm.verify.levels import DEFAULT_ALPHA

MODES = {"adi_fromscratch": "fromscratch", "adi_pretrained": "pretrained",
         "false_acceptance": "unmarked"}


def false_acceptance_config(verifier: str) -> ml_collections.ConfigDict:
  """The ``false_acceptance`` block of ``experiments/false_acceptance.py``
  (``verifier``: ``adi``, ``dataset`` or ``move``; see
  ``configs/false_acceptance.py``)."""
  return ml_collections.ConfigDict(dict(
      verifier=verifier,            # whose verification is certified.
      num_models=200,               # non-marked models (Adi: a key each).
      subset_fraction=0.8,          # each trains on its own stratified subset.
      # 0: one model after another; E: E models at once in one program.
      ensemble_size=0,
      # "vmap", "map", "unroll" or "auto" (the backend's choice).
      ensemble_strategy="auto",
  ))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  mode, rest = train_configs.split_variant(
      arg, MODES,
      "adi_fromscratch,fashion_mnist or adi_fromscratch,digits,runlocal")
  config = train_configs.base_config(rest, mode)
  runlocal = "runlocal" in rest.split(",")
  epochs = config.train.num_epochs
  config.train.schedule = "step"
  config.train.milestones = ((epochs // 3, 2 * epochs // 3) if epochs >= 3
                             else ())

  config.watermark = ml_collections.ConfigDict(dict(
      mode=MODES[mode],
      num_triggers=100,             # n, Section 4.2.
      triggers_per_batch=2,         # k, Section 4.1.
      trigger_seed=ml_collections.config_dict.placeholder(int),  # None: secret.
      alpha=DEFAULT_ALPHA,          # the binomial test's level.
      # The paper's rule: accept iff at most eps |T| triggers disagree
      # (Verify step 3, Section 3.1). The paper fixes no number (eps is the
      # error of an eps-accurate model, and must be < 1/2); 0.1 is about
      # the test error of the Fashion-MNIST models here.
      eps=0.1,
  ))
  config.attack = ml_collections.ConfigDict(dict(
      # The attacker's share of the training set: as many images as the
      # owner's (Section 4.4).
      held_out_fraction=0.5,
      names=("ftll", "ftal", "rtll", "rtal"),
      # None: as many as training (Section 4.4).
      num_epochs=ml_collections.config_dict.placeholder(int),
      # None: the last learning rate of config.train (Section 4.6).
      learning_rate=ml_collections.config_dict.placeholder(float),
  ))
  # As the paper (Section 4.4), piracy and transfer learning are run on the
  # FROMSCRATCH model.
  fromscratch = config.watermark.mode == "fromscratch"
  config.piracy = ml_collections.ConfigDict(dict(
      enabled=fromscratch,
      num_triggers=100,             # TS-NEW.
      attacks=("ftal", "rtal"),     # run on the pirated model (Figure 7).
  ))
  config.transfer = ml_collections.ConfigDict(dict(
      enabled=fromscratch,
      dataset="digits",             # resized to the source image shape.
      num_epochs=20,                # Section 4.4: "another 20 epochs".
      learning_rate=ml_collections.config_dict.placeholder(float),
  ))
  config.false_acceptance = false_acceptance_config("adi")
  if mode == "false_acceptance" and not runlocal and config.dataset != "digits":
    # Small models, cheap enough to train 200 on a CPU: a narrow CNN, 3
    # epochs on its own 10% of the training set.
    config.false_acceptance.subset_fraction = 0.1
    config.train.num_epochs = 3
    config.train.milestones = (1, 2)
    if config.model == "cnn":
      config.model_kwargs.width = 8
  if runlocal:
    config.false_acceptance.num_models = 3
    config.train.batch_size = 32
    config.watermark.num_triggers = 20
    config.piracy.num_triggers = 20
    config.transfer.num_epochs = 1
  return config
