"""MOVE: model ownership verification by embedded external features.

A model owner restyles a few training images (labels kept), trains the
victim on them, and later proves that a suspect model was stolen (copied,
fine-tuned, distilled or queried) with a meta-classifier that recognises
the external features in the suspect's gradients (white-box) or in its
prediction differences (black-box), and a one-sided paired t-test.

Modules:
  style_images: style images from a file, a package's samples, or a seeded
    procedural texture, at the content's size and channels.
  style: style transfer on a fixed random multi-scale network, cached.
  external_features: the watermark (transform a fraction of the training
    set) and the owner's MoveKey.
  meta_features: white-box gradient-sign and black-box
    probability-difference features.
  meta_classifier: the MLP meta-classifier, trained by the engine.
  verification: the one-sided paired t-test on its confidences.
  pipeline: MoveConfig and the steps as a launcher calls them.
"""

from jaxwm.watermark.move.external_features import MoveKey
from jaxwm.watermark.move.meta_classifier import MetaClassifier
from jaxwm.watermark.move.meta_classifier import MetaClassifierConfig
from jaxwm.watermark.move.pipeline import BLACK_BOX
from jaxwm.watermark.move.pipeline import check_verification_size
from jaxwm.watermark.move.pipeline import held_out_accuracy
from jaxwm.watermark.move.pipeline import MoveConfig
from jaxwm.watermark.move.pipeline import train_meta_classifier
from jaxwm.watermark.move.pipeline import verify
from jaxwm.watermark.move.pipeline import watermark
from jaxwm.watermark.move.pipeline import WHITE_BOX
from jaxwm.watermark.move.style import StyleTransferConfig
from jaxwm.watermark.move.verification import MoveVerdict
