"""ResNet with torchvision's architecture (v1.5: stride on the 3x3 conv).

STREAM's official image encoder is a frozen ImageNet ResNet-152 without its fc
layer. Names follow torchvision's (`layer3_17` for `layer3.17`) so converted
weights map one to one. Input: NHWC, ImageNet-normalised.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

Dtype = Any

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def _bn(train, dtype, name):
  return nn.BatchNorm(use_running_average=not train, momentum=0.9,
                      epsilon=1e-5, dtype=dtype, name=name)


class Bottleneck(nn.Module):
  width: int
  stride: int = 1
  downsample: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    d = self.dtype
    y = nn.Conv(self.width, (1, 1), use_bias=False, dtype=d, name="conv1")(x)
    y = nn.relu(_bn(train, d, "bn1")(y))
    y = nn.Conv(self.width, (3, 3), strides=(self.stride, self.stride),
                padding=((1, 1), (1, 1)), use_bias=False, dtype=d, name="conv2")(y)
    y = nn.relu(_bn(train, d, "bn2")(y))
    y = nn.Conv(4 * self.width, (1, 1), use_bias=False, dtype=d, name="conv3")(y)
    y = _bn(train, d, "bn3")(y)
    if self.downsample:
      x = nn.Conv(4 * self.width, (1, 1), strides=(self.stride, self.stride),
                  use_bias=False, dtype=d, name="downsample_conv")(x)
      x = _bn(train, d, "downsample_bn")(x)
    return nn.relu(y + x)


class ResNet(nn.Module):
  """Returns the globally pooled features (B, 2048)."""
  depth: int = 152
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    d = self.dtype
    x = nn.Conv(64, (7, 7), strides=(2, 2), padding=((3, 3), (3, 3)),
                use_bias=False, dtype=d, name="conv1")(x)
    x = nn.relu(_bn(train, d, "bn1")(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for i, blocks in enumerate(DEPTHS[self.depth]):
      for j in range(blocks):
        stride = 2 if (i > 0 and j == 0) else 1
        x = Bottleneck(64 * 2**i, stride, downsample=(j == 0), dtype=d,
                       name=f"layer{i + 1}_{j}")(x, train)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))
