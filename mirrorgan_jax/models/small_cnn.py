"""A small convolutional trunk trained from scratch.

Stands in for Inception-v3 (DAMSM image encoder) and ResNet-152 (STREAM) on the
small `shapes` images and in tests, where ImageNet backbones are neither needed
nor affordable on a CPU.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from mirrorgan_jax.models.layers import batch_norm, conv

Dtype = Any


class SmallCNN(nn.Module):
  """Stride-2 conv -> BN -> LeakyReLU blocks. Returns {'local': the next-to-last
  block's map, 'global': the last block average-pooled (B, widths[-1])}."""
  widths: Sequence[int] = (32, 64, 128, 256)
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    maps = []
    for i, w in enumerate(self.widths):
      x = conv(w, 4, stride=2, padding=1, dtype=self.dtype, name=f"conv{i}")(x)
      x = batch_norm(train, self.dtype, name=f"bn{i}")(x)
      x = nn.leaky_relu(x, 0.2)
      maps.append(x)
    local = maps[-2] if len(maps) > 1 else maps[-1]
    return {"local": local, "global": jnp.mean(x.astype(jnp.float32), axis=(1, 2))}
