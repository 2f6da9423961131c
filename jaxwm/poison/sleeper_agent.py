"""Sleeper Agent: the targeted clean-label baseline of UBW-C.

Souri et al. (NeurIPS 2022), as compared in the UBW paper (Section 5.2,
Appendix C.1): images of the target class y_t receive invisible
perturbations crafted so that training on them lowers the cross-entropy
towards y_t of the source class's images carrying the visible trigger; a
model trained on the released set then predicts y_t on triggered source
images. Only target-class samples are perturbed (they keep their true
label y_t), chosen by the largest gradient norms.

  marked, key, objective = alignment_watermark.mark(
      dataset, sleeper_agent.METHOD, config, craft_config, rng, model=...,
      variables=...)
"""

from __future__ import annotations

from jaxwm.poison.alignment_watermark import Method
from jaxwm.train import losses

METHOD = Method(
    name="sleeper_agent",
    target_loss=lambda config: losses.cross_entropy,
    target_label=lambda config: int(config.target_label),
    candidate_classes=lambda config: (int(config.target_label),))
