"""Negative data augmentation for the discriminators (Sinha et al., ICLR 2021):
real images made wrong in a way the generator's images are, shown to each D
as a further fake. A deviation from MirrorGAN, for the shapes default
(`loss.negative_weight`; 0, off, in birds and coco).

The shapes generator's misses are objects whose anti-aliased borders come
out soft and uneven (docs/shapes_default_job.md); real images blurred part of
the way teach each D that a soft border is not a real one.
"""

import jax
import jax.numpy as jnp

# The 3x3 binomial kernel: [1, 2, 1] / 4 along each axis.
_BINOMIAL = jnp.array([1.0, 2.0, 1.0]) / 4.0


def blur3x3(images: jax.Array) -> jax.Array:
  """(B, H, W, C) images filtered with the 3x3 binomial kernel, channel by
  channel, edge pixels repeated outside the image."""
  x = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  h, w = images.shape[1:3]
  rows = sum(_BINOMIAL[k] * x[:, k:k + h] for k in range(3))
  return sum(_BINOMIAL[k] * rows[:, :, k:k + w] for k in range(3)).astype(images.dtype)


def blurred(images: jax.Array, key: jax.Array, min_share: float) -> jax.Array:
  """Each image moved towards its `blur3x3` by a share drawn uniformly from
  [min_share, 1], one per image."""
  share = jax.random.uniform(key, (images.shape[0], 1, 1, 1), minval=min_share, maxval=1.0)
  return images + share.astype(images.dtype) * (blur3x3(images) - images)
