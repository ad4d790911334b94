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
  block's map, 'global': the last block average-pooled (B, widths[-1])}.

  The input gets coordinate channels first: without them a translation-
  equivariant trunk ending in an average pool hardly sees *where* things are,
  and the captioner and DAMSM then cannot teach the generator position words
  (measured on shapes: position accuracy near chance, README "The default job").
  """
  widths: Sequence[int] = (32, 64, 128, 256)
  dtype: Dtype = jnp.float32

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
    return {"local": local, "global": jnp.mean(x.astype(jnp.float32), axis=(1, 2))}
