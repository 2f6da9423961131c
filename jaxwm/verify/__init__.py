"""Host-side statistics (NumPy/SciPy, float64) that turn marks into claims.

Nothing here knows a watermark: the tests take counts, paired
probabilities, or a black-box model with the test images to query and a
function that marks them (:func:`jaxwm.poison.verify_dataset_ownership`
builds those from a dataset watermark's key).
"""

from jaxwm.verify.binomial import BinomialTest, binomial_test
from jaxwm.verify.levels import DEFAULT_ALPHA, REJECT, RETAIN, decision
from jaxwm.verify.dataset_ownership import PredictProba
from jaxwm.verify.dataset_ownership import TooFewCorrectError
from jaxwm.verify.dataset_ownership import verify_ownership
from jaxwm.verify.reference import ReferenceTestResult, reference_ttest
from jaxwm.verify.ttest import PairedTTestResult, paired_ttest
