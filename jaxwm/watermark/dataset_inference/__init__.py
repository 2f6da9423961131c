"""Dataset Inference (Maini, Yaghini and Papernot, ICLR 2021): ownership
of a model resolved by what it learnt from the owner's private samples,
no watermark needed.

A sample's distances to the decision boundary towards each class (MinGD,
white-box) or along random directions (Blind Walk, black-box) are larger
for samples a model was trained on; a confidence regressor learns the
victim's difference, and a suspect that shows it too, on private samples
more than on public ones (a one-sided Welch t-test), is judged derived
from the owner's data.

Modules:
  distances: MinGD and Blind Walk, compiled and batched.
  regressor: the embedding and the confidence regressor.
  pipeline: the settings, the owner's samples, fit and verify.
"""

from jaxwm.watermark.dataset_inference.distances import blind_walk_distances
from jaxwm.watermark.dataset_inference.distances import BlindWalkConfig
from jaxwm.watermark.dataset_inference.distances import mingd_distances
from jaxwm.watermark.dataset_inference.distances import mingd_perturbation
from jaxwm.watermark.dataset_inference.distances import MinGDConfig
from jaxwm.watermark.dataset_inference.pipeline import BLACK_BOX
from jaxwm.watermark.dataset_inference.pipeline import DatasetInferenceConfig
from jaxwm.watermark.dataset_inference.pipeline import DatasetInferenceVerdict
from jaxwm.watermark.dataset_inference.pipeline import draw_samples
from jaxwm.watermark.dataset_inference.pipeline import fit
from jaxwm.watermark.dataset_inference.pipeline import verify
from jaxwm.watermark.dataset_inference.pipeline import WHITE_BOX
from jaxwm.watermark.dataset_inference.regressor import ConfidenceRegressor
from jaxwm.watermark.dataset_inference.regressor import RegressorConfig
from jaxwm.watermark.dataset_inference.regressor import train_regressor
