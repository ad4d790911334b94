"""Blurred real images, the further fakes of negative data augmentation."""

import jax
import jax.numpy as jnp
import numpy as np

from mirrorgan_jax import negatives


def _np_blur(x):
  """The 3x3 binomial filter as one 2-D kernel over the edge-padded image."""
  k = np.outer([1, 2, 1], [1, 2, 1]) / 16.0
  p = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  h, w = x.shape[1:3]
  return sum(k[i, j] * p[:, i:i + h, j:j + w] for i in range(3) for j in range(3))


def test_blur3x3_is_the_binomial_kernel_with_edges_repeated():
  x = np.random.default_rng(0).uniform(-1, 1, size=(2, 5, 7, 3)).astype(np.float32)
  np.testing.assert_allclose(negatives.blur3x3(jnp.asarray(x)), _np_blur(x), rtol=0, atol=1e-6)
  # an impulse away from the edges spreads as the kernel; a flat image stays flat
  impulse = np.zeros((1, 5, 5, 1), np.float32)
  impulse[0, 2, 2, 0] = 16.0
  np.testing.assert_allclose(negatives.blur3x3(jnp.asarray(impulse))[0, 1:4, 1:4, 0],
                             np.outer([1, 2, 1], [1, 2, 1]), atol=1e-6)
  np.testing.assert_array_equal(negatives.blur3x3(jnp.full((1, 4, 4, 3), -1.0)), -1.0)


def test_each_image_moves_towards_its_blur_by_its_own_share():
  x = np.random.default_rng(1).uniform(-1, 1, size=(64, 6, 6, 3)).astype(np.float32)
  out = np.asarray(negatives.blurred(jnp.asarray(x), jax.random.key(0), 0.3))
  step = (_np_blur(x) - x).reshape(64, -1)
  # each image's share by least squares over its pixels: out - x = share * step
  share = ((out - x).reshape(64, -1) * step).sum(1) / (step**2).sum(1)
  np.testing.assert_allclose((out - x).reshape(64, -1), share[:, None] * step, atol=1e-5)
  assert share.min() >= 0.3 - 1e-5 and share.max() <= 1.0 + 1e-5
  assert np.ptp(share) > 0.5  # drawn per image, not one value for the batch
  np.testing.assert_allclose(negatives.blurred(jnp.asarray(x), jax.random.key(0), 1.0),
                             _np_blur(x), atol=1e-6)
