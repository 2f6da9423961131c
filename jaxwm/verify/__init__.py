"""Host-side statistics (NumPy/SciPy, float64) that turn marks into claims."""

from jaxwm.verify.binomial import BinomialTest, binomial_test
from jaxwm.verify.dataset_ownership import verify_dataset_ownership
from jaxwm.verify.ttest import PairedTTestResult, paired_ttest
