"""UBW-C: the untargeted backdoor watermark with clean labels.

UBW paper, Section 3.4 and Appendix B. The released images carry invisible
perturbations crafted so that training on them raises, on the source
class's images with the visible trigger, the cross-entropy of the true
label plus lambda times the prediction entropy (Eq. 6 and 9, lambda = 2):
the watermarked model misclassifies triggered images in a dispersed,
untargeted way, which verification detects without a target label.
Every perturbed sample keeps its true label; candidates are all classes.

  marked, key, objective = alignment_watermark.mark(
      dataset, ubw_c.METHOD, config, craft_config, rng, model=...,
      variables=...)
"""

from __future__ import annotations

import functools

from jaxwm import alignment
from jaxwm.poison.alignment_watermark import Method

METHOD = Method(
    name="ubw_c",
    target_loss=lambda config: functools.partial(alignment.dispersion_loss,
                                                 lam=config.lam),
    target_label=lambda config: None,
    candidate_classes=lambda config: None)
