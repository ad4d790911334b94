"""Building blocks shared by the generator and the discriminators.

Initialisation follows the official `weights_init` (applied to G and every D):
orthogonal kernels with gain 1 for every conv and linear layer, zero linear
biases, BatchNorm scale ~ N(1, 0.02) and zero shift. BatchNorm uses PyTorch's
momentum 0.1 (Flax momentum 0.9) and eps 1e-5.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

orthogonal = nn.initializers.orthogonal()


def bn_scale_init(key, shape, dtype=jnp.float32):
  """BatchNorm gamma ~ N(1, 0.02), as the official `weights_init`."""
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def uniform_init(scale: float):
  """U(-scale, scale): PyTorch's defaults and the DAMSM/STREAM inits use it."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)

  return init


def torch_bias_init(fan_in: int):
  """PyTorch's default conv/linear bias init, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  return uniform_init(1.0 / fan_in**0.5)


def batch_norm(train: bool, dtype: Dtype, name: str | None = None,
               momentum: float = 0.9) -> nn.BatchNorm:
  """BatchNorm with PyTorch's defaults (momentum 0.1 == Flax 0.9, eps 1e-5)."""
  return nn.BatchNorm(use_running_average=not train, momentum=momentum,
                      epsilon=1e-5, dtype=dtype, scale_init=bn_scale_init,
                      name=name)


def conv(features: int, kernel: int, stride: int = 1, padding: int = 0,
         dtype: Dtype = jnp.float32, use_bias: bool = False,
         name: str | None = None, **kwargs) -> nn.Conv:
  """A PyTorch-style Conv2d (explicit symmetric padding, no bias by default)."""
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((padding, padding), (padding, padding)),
                 use_bias=use_bias, dtype=dtype, kernel_init=orthogonal,
                 name=name, **kwargs)


def glu(x: jax.Array) -> jax.Array:
  """Gated linear unit over the channel (last) axis: a * sigmoid(b)."""
  a, b = jnp.split(x, 2, axis=-1)
  return a * nn.sigmoid(b)


def upsample_nearest(x: jax.Array, factor: int = 2) -> jax.Array:
  """Nearest-neighbour upsampling of an NHWC tensor (nn.Upsample 'nearest')."""
  return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


class UpBlock(nn.Module):
  """Nearest x2 -> conv3x3 (in -> 2*out) -> BN -> GLU."""
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    x = upsample_nearest(x)
    x = conv(2 * self.features, 3, padding=1, dtype=self.dtype)(x)
    x = batch_norm(train, self.dtype)(x)
    return glu(x)


class ResBlock(nn.Module):
  """conv3x3 (C -> 2C) -> BN -> GLU -> conv3x3 (C -> C) -> BN, plus the input."""
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    c = x.shape[-1]
    y = conv(2 * c, 3, padding=1, dtype=self.dtype)(x)
    y = glu(batch_norm(train, self.dtype)(y))
    y = conv(c, 3, padding=1, dtype=self.dtype)(y)
    y = batch_norm(train, self.dtype)(y)
    return y + x
