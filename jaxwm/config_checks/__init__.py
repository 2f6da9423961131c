"""Settings checked before any work: a launcher's config and paths, and a
training recipe, with every problem reported at once.

* :mod:`~jaxwm.config_checks.core`: :class:`Problem`, :class:`ConfigError`
  and the checks of single fields.
* :mod:`~jaxwm.config_checks.training`: the data and the training recipe
  (run by :func:`jaxwm.train.recipe.train_model` too).
* :mod:`~jaxwm.config_checks.dataset_watermarks`,
  :mod:`~jaxwm.config_checks.crafted_poisons`,
  :mod:`~jaxwm.config_checks.model_watermarks`: the blocks of each kind of
  experiment.
* :mod:`~jaxwm.config_checks.paths`: ``--workdir`` and the output files.
* :mod:`~jaxwm.config_checks.launchers`: what each launcher checks.

Only the core is imported here, so that the training engine can use the
training checks without importing the experiments.
"""

from jaxwm.config_checks.core import ConfigError, Fields, Problem
from jaxwm.config_checks.core import raise_problems

__all__ = ["ConfigError", "Fields", "Problem", "raise_problems"]
