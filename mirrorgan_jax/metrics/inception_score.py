"""Inception Score as the improved-GAN code computes it: the softmax of the
class logits, 10 splits of consecutive images (each split n // splits images,
a remainder dropped), exp(E_x KL(p(y|x) || p(y))) per split, mean and std."""

import numpy as np


def inception_score(logits, splits: int = 10) -> tuple[float, float]:
  logits = np.asarray(logits, np.float64)
  n = len(logits)
  if logits.ndim != 2 or n < splits:
    raise ValueError(f"IS needs (N >= {splits}, classes) logits, got shape {logits.shape}")
  z = logits - logits.max(axis=1, keepdims=True)
  log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
  p = np.exp(log_p)
  size = n // splits
  scores = []
  for k in range(splits):
    part, log_part = p[k * size:(k + 1) * size], log_p[k * size:(k + 1) * size]
    log_py = np.log(part.mean(axis=0))
    kl = (part * (log_part - log_py)).sum(axis=1)
    scores.append(np.exp(kl.mean()))
  return float(np.mean(scores)), float(np.std(scores))
