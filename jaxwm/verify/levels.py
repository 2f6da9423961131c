"""The significance level and the decision names every verdict uses.

jaxwm decides every hypothesis test at one default level,
:data:`DEFAULT_ALPHA` = 0.01: the level at which the UBW paper reads its
dataset-watermark p-values ("far below 0.01"), the level of the MOVE
paper's t-test, and the level jaxwm's binomial rule for Adi et al.'s
trigger sets is sized at. An ownership claim is an accusation, so the
stricter of the two usual levels (0.05 would wrongly accuse one innocent
suspect in twenty) is the default everywhere; every launcher and command
takes another one (``--config.verify.alpha``, ``--config.watermark.alpha``,
``jaxwm verify --alpha``).
"""

from __future__ import annotations

DEFAULT_ALPHA = 0.01
# The decision of a test: H0 (the suspect is independent of the owner's
# data or key) rejected, or not.
REJECT, RETAIN = "reject_h0", "fail_to_reject_h0"
# A verdict that a verifier's own controls disown: H0 rejected while a
# model known to be innocent was accused too, or retained while a model
# known to carry the watermark was missed. Neither names the suspect stolen.
INCONCLUSIVE = "inconclusive"


def decision(rejected: bool) -> str:
  """:data:`REJECT` or :data:`RETAIN`."""
  return REJECT if rejected else RETAIN
