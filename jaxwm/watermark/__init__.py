"""Model watermarks.

Modules:
  commitments: SHA-256 hash commitments over a canonical array encoding.
  hash_draws: unbiased draws (seeds, integers, subsets) from SHA-256.
  transcript: Fiat-Shamir transcripts and their challenges.
  trigger_sets: abstract or folder trigger images with random labels.
  adi: Adi et al. KeyGen / Verify with commitments, and Mark's data helpers.
  embedding: Mark (FROMSCRATCH, PRETRAINED) through the training engine.
  trigger_watermarks: content, noise and unrelated trigger sets with a
    target label (Zhang et al., 2018), their keys and accuracy.
  public: the publicly verifiable variant (cut-and-choose + Fiat-Shamir).
  key_files: key save/load through jaxwm.secure_files.
  move: MOVE, external features (style transfer) verified by a
    meta-classifier and a paired t-test (a package).
  dataset_inference: Dataset Inference, no watermark: distances to the
    decision boundary, a confidence regressor and a Welch t-test (a
    package).
"""
