"""Whole experiments as functions ``(config, workdir, metrics) -> outcome``.

One module per launcher in ``experiments/``, holding the launcher's whole
job: ``train``, ``dataset_watermark``, ``craft_poison``, ``ablate_ubw_p``,
``alignment_transfer``, ``model_watermark``, ``false_acceptance``, and
``report`` (the docs' tables rebuilt from result JSONs, with
``report_tables`` and ``report_experiments``). What several of them share
lives in ``common`` (model folders, a suspect's watermark metrics) and
``scenarios`` (the verification scenarios of the UBW paper, one more
beside them, and their results entries).

Recipes compose the method packages (data, models, train, alignment,
poison, watermark, steal, defenses, metrics, verify); no method package
imports a recipe.
"""
