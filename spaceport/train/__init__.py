"""Training stage: SfM model + images in, a Gaussian splat and its held-out metrics out (imports nothing heavy)."""
