"""Evaluation metrics: FID, Inception Score, R-precision (and the Inception
network they share). The shapes alignment scorer lives with its dataset."""
