"""Inference layer: NumPyro models built from specifications, and the fits."""
