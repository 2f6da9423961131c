"""What a run shows besides its results JSON: progress across models,
training curves, image grids and histograms as PNG files, and a metrics
log that TensorBoard reads.

:mod:`plots` draws (matplotlib, imported only when a picture is drawn),
:mod:`events` writes the TensorBoard log (tensorboardX, no TensorFlow),
:mod:`run_log` collects what a run reports and where it goes. Both
libraries are the ``plots`` extra (``pip install "jaxwm[plots]"``); without
them a run still runs and says once what it did not draw.
"""

from jaxwm.monitor.run_log import (RunLog, add_histogram, add_image_grid,
                                   current, expect_models, recording,
                                   skip_model)

__all__ = ["RunLog", "add_histogram", "add_image_grid", "current",
           "expect_models", "recording", "skip_model"]
