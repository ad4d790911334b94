"""ResNet with torchvision's architecture (v1.5: stride on the 3x3 conv).

STREAM's official image encoder is a frozen ImageNet ResNet-152 without its fc
layer. Names follow torchvision's (`layer3_17` for `layer3.17`) so converted
weights map one to one. Input: NHWC, ImageNet-normalised.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mirrorgan_jax.models.layers import Conv, relu_keeping_mask as relu

Dtype = Any

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def _conv(features, kernel, stride, padding, dtype, name):
  """torchvision's Conv2d (no bias) through `layers.conv2d`, which runs 1x1
  kernels and small outputs as matmuls on CPU; `nn.Conv`'s parameter name,
  layout and initialiser."""
  return Conv(features, kernel, stride, padding, dtype=dtype, name=name,
              kernel_init=nn.initializers.lecun_normal())


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
    y = _conv(self.width, 1, 1, 0, d, "conv1")(x)
    y = relu(_bn(train, d, "bn1")(y))
    y = _conv(self.width, 3, self.stride, 1, d, "conv2")(y)
    y = relu(_bn(train, d, "bn2")(y))
    y = _conv(4 * self.width, 1, 1, 0, d, "conv3")(y)
    y = _bn(train, d, "bn3")(y)
    if self.downsample:
      x = _conv(4 * self.width, 1, self.stride, 0, d, "downsample_conv")(x)
      x = _bn(train, d, "downsample_bn")(x)
    # The block's output is kept, not fused into what reads it: otherwise
    # XLA:CPU fuses the residual stream's elementwise chain into the next
    # block's consumers, recomputing every earlier block's BatchNorm, add and
    # ReLU from saved conv outputs (35 of them in layer3 of ResNet-152), which
    # made those fusions the largest ops of the GAN step (docs/benchmarks.md).
    # The barrier is an identity: values and gradients are unchanged.
    return jax.lax.optimization_barrier(relu(y + x))


class ResNet(nn.Module):
  """Returns the globally pooled features (B, 2048)."""
  depth: int = 152
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    d = self.dtype
    x = _conv(64, 7, 2, 3, d, "conv1")(x)
    x = relu(_bn(train, d, "bn1")(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for i, blocks in enumerate(DEPTHS[self.depth]):
      for j in range(blocks):
        stride = 2 if (i > 0 and j == 0) else 1
        x = Bottleneck(64 * 2**i, stride, downsample=(j == 0), dtype=d,
                       name=f"layer{i + 1}_{j}")(x, train)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))
