"""A small convolutional trunk trained from scratch.

Stands in for Inception-v3 (DAMSM image encoder) and ResNet-152 (STREAM) on the
small `shapes` images and in tests, where ImageNet backbones are neither needed
nor affordable on a CPU.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mirrorgan_jax.models.layers import batch_norm, conv

Dtype = Any


def with_coordinates(x: jax.Array) -> jax.Array:
  """Appends two channels holding each pixel's x and y in [-1, 1] (CoordConv)."""
  b, h, w, _ = x.shape
  ys, xs = jnp.meshgrid(jnp.linspace(-1.0, 1.0, h), jnp.linspace(-1.0, 1.0, w),
                        indexing="ij")
  grid = jnp.broadcast_to(jnp.stack([xs, ys], -1), (b, h, w, 2)).astype(x.dtype)
  return jnp.concatenate([x, grid], axis=-1)


class SmallCNN(nn.Module):
  """Stride-2 conv -> BN -> LeakyReLU blocks. Returns {'local': the next-to-last
  block's map, 'global': the last block's map at grid x grid, flattened
  (B, grid * grid * widths[-1]); the map is resized to the grid only when its
  size differs (a smaller stage's images during staged growth).

  Unlike the ImageNet backbones it stands in for, it keeps the layout: the
  input gets coordinate channels, and the global feature is the flattened map
  rather than its average. A translation-equivariant trunk ending in an
  average pool hardly sees *where* things are, and the captioner and DAMSM
  then cannot teach the generator position and relation words
  (docs/shapes_default_job.md).
  """
  widths: Sequence[int] = (32, 64, 128, 256)
  dtype: Dtype = jnp.float32
  grid: int = 4

  @nn.compact
  def __call__(self, x, train: bool = False):
    maps = []
    x = with_coordinates(x)
    for i, w in enumerate(self.widths):
      x = conv(w, 4, stride=2, padding=1, dtype=self.dtype, name=f"conv{i}")(x)
      x = batch_norm(train, self.dtype, name=f"bn{i}")(x)
      x = nn.leaky_relu(x, 0.2)
      maps.append(x)
    local = maps[-2] if len(maps) > 1 else maps[-1]
    if x.shape[1:3] != (self.grid, self.grid):  # in the compute dtype, as the convs
      x = jax.image.resize(x, (x.shape[0], self.grid, self.grid, x.shape[-1]), "linear")
    return {"local": local, "global": x.astype(jnp.float32).reshape(x.shape[0], -1)}
