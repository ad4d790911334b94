"""Fréchet Inception Distance, computed as pytorch-fid computes it.

FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2)) over 2048-d
Inception pool features, in float64, with pytorch-fid's fallbacks: an eps on
the diagonals when the square root is singular, and the real part taken when
its imaginary part is numerically zero. Statistics files use pytorch-fid's
.npz keys `mu` and `sigma`, so its precomputed files load here and ours there.
"""

import os
import warnings

import numpy as np
from scipy import linalg


def statistics(features) -> tuple[np.ndarray, np.ndarray]:
  """(mean, covariance) of (N, D) features, N >= 2."""
  f = np.asarray(features, np.float64)
  if f.ndim != 2 or len(f) < 2:
    raise ValueError(f"FID statistics need (N >= 2, D) features, got shape {f.shape}")
  return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
    raise ValueError(f"FID statistics differ in shape: mu {mu1.shape} vs {mu2.shape}, "
                     f"sigma {s1.shape} vs {s2.shape}")
  diff = mu1 - mu2
  with warnings.catch_warnings():  # singular products (fewer images than dims) are expected
    warnings.simplefilter("ignore", linalg.LinAlgWarning)
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
      offset = np.eye(len(s1)) * eps
      covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(f"FID: sqrtm has an imaginary component "
                       f"{np.max(np.abs(covmean.imag)):.3g}")
    covmean = covmean.real
  return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def save_statistics(path: str, mu, sigma, **extra) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp.npz"
  np.savez(tmp, mu=mu, sigma=sigma, **extra)
  os.replace(tmp, path)  # a half-written cache is never read


def load_statistics(path: str) -> tuple[np.ndarray, np.ndarray]:
  try:
    with np.load(path, allow_pickle=False) as f:
      mu, sigma = f["mu"], f["sigma"]
  except KeyError as e:
    raise ValueError(f"{path}: FID statistics need arrays 'mu' and 'sigma' ({e})") from e
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: not a readable .npz of FID statistics ({e})") from e
  if mu.ndim != 1 or sigma.shape != mu.shape * 2:
    raise ValueError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not fit together")
  return mu.astype(np.float64), sigma.astype(np.float64)
