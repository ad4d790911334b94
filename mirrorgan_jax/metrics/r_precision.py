"""R-precision (R = 1) by the community protocol (reference section 10, as in
DM-GAN's code): each generated image's DAMSM global code against the DAMSM
sentence codes of its true caption and 99 captions of images of other classes,
by cosine similarity; a hit when the true caption scores strictly highest.
Hits are shuffled and split into 10 folds; mean and std of the fold hit rates,
in percent. (DM-GAN's loop averages 2,999 of each 3,000; we use whole folds.)"""

import numpy as np

CANDIDATES = 100


def draw_negatives(class_ids, true_rows, rng, count: int = CANDIDATES - 1) -> np.ndarray:
  """For each true caption row, `count` rows of captions whose image class
  differs from that row's (class_ids: one per caption row)."""
  class_ids = np.asarray(class_ids)
  out = np.empty((len(true_rows), count), np.int64)
  for i, row in enumerate(true_rows):
    others = np.flatnonzero(class_ids != class_ids[row])
    if len(others) == 0:
      raise ValueError("R-precision needs captions of at least two classes")
    out[i] = rng.choice(others, count, replace=len(others) < count)
  return out


def cosine_hits(image_codes, candidate_codes) -> np.ndarray:
  """image_codes (N, D), candidate_codes (N, C, D), the true one first ->
  bool (N,): the true caption is strictly the most similar."""
  img = np.asarray(image_codes, np.float64)
  cand = np.asarray(candidate_codes, np.float64)
  img = img / np.maximum(np.linalg.norm(img, axis=-1, keepdims=True), 1e-8)
  cand = cand / np.maximum(np.linalg.norm(cand, axis=-1, keepdims=True), 1e-8)
  sims = np.einsum("nd,ncd->nc", img, cand)
  return sims[:, 0] > sims[:, 1:].max(axis=1)


def r_precision(hits, rng, folds: int = 10) -> tuple[float, float]:
  hits = np.asarray(hits, np.float64)
  if len(hits) < folds:
    raise ValueError(f"R-precision needs at least {folds} images, got {len(hits)}")
  hits = hits[rng.permutation(len(hits))]
  size = len(hits) // folds
  rates = [100.0 * hits[k * size:(k + 1) * size].mean() for k in range(folds)]
  return float(np.mean(rates)), float(np.std(rates))
