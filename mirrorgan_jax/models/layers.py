"""Building blocks shared by the generator and the discriminators.

Initialisation follows the official `weights_init` (applied to G and every D):
orthogonal kernels with gain 1 for every conv and linear layer, zero linear
biases, BatchNorm scale ~ N(1, 0.02) and zero shift. BatchNorm uses PyTorch's
momentum 0.1 (Flax momentum 0.9) and eps 1e-5.
"""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

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


BN_MOMENTUM = 0.9  # Flax's convention: PyTorch's momentum 0.1


def batch_norm(train: bool, dtype: Dtype, name: str | None = None,
               momentum: float = BN_MOMENTUM) -> nn.BatchNorm:
  """BatchNorm with PyTorch's defaults (momentum 0.1 == Flax 0.9, eps 1e-5)."""
  return nn.BatchNorm(use_running_average=not train, momentum=momentum,
                      epsilon=1e-5, dtype=dtype, scale_init=bn_scale_init,
                      name=name)


_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _xla_conv(x, w, stride: int, padding: int):
  return lax.conv_general_dilated(x, w, (stride, stride), [(padding, padding)] * 2,
                                  dimension_numbers=_DIMENSIONS)


def conv_weight_grad(x, g, kernel_shape, stride: int, padding: int):
  """d(loss)/d(kernel) of a conv as one matmul per kernel tap:
  dW[i, j] = sum over batch and output pixels of x[p*stride + (i, j)] (x) g[p].
  Taps run one after another (`lax.map`), so one shifted copy of x is alive."""
  kh, kw, cin, cout = kernel_shape
  b, ho, wo, _ = g.shape
  xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  g2 = g.reshape(-1, cout)
  window = (b, (ho - 1) * stride + 1, (wo - 1) * stride + 1, cin)
  acc = jnp.promote_types(x.dtype, jnp.float32)  # bf16 sums in float32; float64 stays

  def tap(ij):
    zero = jnp.zeros((), ij.dtype)  # one index type, also with jax_enable_x64
    patch = lax.dynamic_slice(xp, (zero, ij[0], ij[1], zero), window)[:, ::stride, ::stride]
    return lax.dot_general(patch.reshape(-1, cin), g2, (((0,), (0,)), ((), ())),
                           preferred_element_type=acc)

  offsets = jnp.array([(i, j) for i in range(kh) for j in range(kw)], jnp.int32)
  return lax.map(tap, offsets).reshape(kernel_shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_tapwise_grad(x, w, stride, padding):
  return _xla_conv(x, w, stride, padding)


def _conv_fwd(x, w, stride, padding):
  return _xla_conv(x, w, stride, padding), (x, w)


def _conv_bwd(stride, padding, residuals, g):
  x, w = residuals
  dx = jax.vjp(lambda x_: _xla_conv(x_, w, stride, padding), x)[1](g)[0]
  dw = conv_weight_grad(x, g, w.shape, stride, padding).astype(w.dtype)
  return dx, dw


_conv_tapwise_grad.defvjp(_conv_fwd, _conv_bwd)


def upsample_conv3x3(x, w):
  """conv3x3(nearest x2 upsampling of x), padding 1, computed at the input's
  resolution: each of the four output phases (row parity a, column parity b)
  is a 2x2 convolution of x whose taps sum the 3x3 taps that read the same
  input pixel (rows: a=0 reads x[i-1] with w[0] and x[i] with w[1]+w[2]; a=1
  reads x[i] with w[0]+w[1] and x[i+1] with w[2]). Equal to the direct form
  up to float rounding, with 16 instead of 36 kernel taps per input pixel."""
  rows = (jnp.stack([w[0], w[1] + w[2]]), jnp.stack([w[0] + w[1], w[2]]))
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  h, wd = x.shape[1], x.shape[2]
  phases = []
  for a in (0, 1):
    wa = rows[a]
    cols = (jnp.stack([wa[:, 0], wa[:, 1] + wa[:, 2]], 1),
            jnp.stack([wa[:, 0] + wa[:, 1], wa[:, 2]], 1))
    phases.append([conv2d(xp[:, a:a + h + 1, b:b + wd + 1], cols[b]) for b in (0, 1)])
  y = jnp.stack([jnp.stack(p, 3) for p in phases], 2)  # (B, H, 2, W, 2, C)
  b_, _, _, _, _, c = y.shape
  return y.reshape(b_, 2 * h, 2 * wd, c)


# On CPU a conv whose output has at most this many pixels per image runs as one
# matmul over its patches: XLA:CPU's own conv is 2-5x slower on the
# discriminators' 4x4 and 8x8 maps and ResNet's 7x7 stage, and on ResNet's 14x14
# layer3 its input gradient is 1.2-1.35x slower, forward 1.0-1.2x (14x14 = 196;
# docs/benchmarks.md). No generator or discriminator map lies in 65..196.
MATMUL_CONV_MAX_PIXELS = 196
# So does a conv of an image (at most this many input channels: RGB, plus the
# small CNN's coordinates) whose stride divides its kernel (the discriminators'
# first 4x4 stride-2 layer): its patches are a few block views, and XLA's conv
# and the tap-wise gradient reduce over only 3-5 channels per dot (1.4-2x
# slower at 32 to 256 px, forward with either gradient; docs/benchmarks.md).
MATMUL_CONV_MAX_CIN = 8
# A conv to at most this many channels (a stage's image) keeps XLA's own kernel
# gradient: the tap-wise one is a dot with 3 output columns per tap there, 1.2-2.6x
# slower at 16 to 256 px (docs/benchmarks.md).
XLA_GRAD_MAX_COUT = 4


def _block_patches(x, kh: int, kw: int, s: int, ho: int, wo: int):
  """im2col for a stride that divides the kernel, from the input's s x s pixel
  blocks: x as (B, H/s, s, W/s, s, C) is a free reshape, and the window at
  output (o1, o2) is the blocks (o1 + a, o2 + b) for a < kh/s, b < kw/s. The
  (kh/s) (kw/s) block views are stacked and put in the kernel's tap order
  (row a s + p, column b s + q, channel) in one transpose, so the kernel is
  used as it is stored (a 4x4 kernel at stride 2: 4 views instead of 16)."""
  b, _, _, c = x.shape
  hn, wn = (ho - 1) * s + kh, (wo - 1) * s + kw  # the rows and columns read
  x = x[:, :hn, :wn].reshape(b, hn // s, s, wn // s, s, c)
  views = jnp.stack([jnp.stack([x[:, i:i + ho, :, j:j + wo] for j in range(kw // s)])
                     for i in range(kh // s)])  # (kh/s, kw/s, B, ho, s, wo, s, C)
  return views.transpose(2, 3, 5, 0, 4, 1, 6, 7)


def matmul_conv(x, w, stride: int = 1, padding: int = 0):
  """NHWC x HWIO convolution as one matmul: the kernel taps' strided views of
  the padded input side by side (im2col, tap-major like the kernel's reshape)
  times the kernel as a (kh * kw * cin, cout) matrix. A 1x1 kernel is the
  matmul alone, a kernel that covers the input a reshape of it, and a stride
  that divides the kernel reads pixel blocks (`_block_patches`). On XLA:CPU
  each view is a kernel of its own, forward and backward (docs/benchmarks.md).
  Gradients by autodiff: matmuls, and the views' transposes."""
  kh, kw, cin, cout = w.shape
  if padding:
    x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  b, h, wd, _ = x.shape
  ho, wo = (h - kh) // stride + 1, (wd - kw) // stride + 1
  if ho == wo == 1:
    patches = x[:, :kh, :kw]
  elif stride > 1 and kh % stride == 0 and kw % stride == 0:
    patches = _block_patches(x, kh, kw, stride, ho, wo)
  else:
    taps = [x[:, i:i + (ho - 1) * stride + 1:stride, j:j + (wo - 1) * stride + 1:stride]
            for i in range(kh) for j in range(kw)]
    patches = taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)
  y = lax.dot_general(patches.reshape(b * ho * wo, kh * kw * cin),
                      w.reshape(kh * kw * cin, cout), (((1,), (0,)), ((), ())))
  return y.reshape(b, ho, wo, cout)


def conv2d(x, w, stride: int = 1, padding: int = 0):
  """NHWC x HWIO convolution. On CPU, 1x1 kernels, small outputs (at most
  MATMUL_CONV_MAX_PIXELS per image) and images read at a stride that divides
  the kernel run as a matmul (`matmul_conv`); convs to an image's few channels
  are XLA's with its own gradients; the others keep XLA's forward and input
  gradient, and their kernel gradient is computed tap by tap
  (`conv_weight_grad`): XLA:CPU's own weight-gradient convolution runs 3-4x
  slower than the forward pass on the large maps of the later stages. Other
  backends use XLA's convolution as is."""
  if jax.default_backend() != "cpu":
    return _xla_conv(x, w, stride, padding)
  kh, kw, cin, cout = w.shape
  ho = (x.shape[1] + 2 * padding - kh) // stride + 1
  wo = (x.shape[2] + 2 * padding - kw) // stride + 1
  image_blocks = cin <= MATMUL_CONV_MAX_CIN and stride > 1 and kh % stride == kw % stride == 0
  if (kh, kw) == (1, 1) or ho * wo <= MATMUL_CONV_MAX_PIXELS or image_blocks:
    return matmul_conv(x, w, stride, padding)
  if cout <= XLA_GRAD_MAX_COUT:
    return _xla_conv(x, w, stride, padding)
  return _conv_tapwise_grad(x, w, stride, padding)


class Conv(nn.Module):
  """A PyTorch-style Conv2d: square kernel, explicit symmetric padding, no bias
  by default; parameters named as `nn.Conv`'s ('kernel', 'bias')."""
  features: int
  kernel: int
  stride: int = 1
  padding: int = 0
  use_bias: bool = False
  dtype: Dtype = jnp.float32
  kernel_init: Callable = orthogonal
  bias_init: Callable = nn.initializers.zeros
  upsample: bool = False  # nearest x2 first (3x3, stride 1, padding 1 only)

  @nn.compact
  def __call__(self, x):
    w = self.param("kernel", self.kernel_init,
                   (self.kernel, self.kernel, x.shape[-1], self.features), jnp.float32)
    x, w = x.astype(self.dtype), w.astype(self.dtype)
    if self.upsample:
      if (self.kernel, self.stride, self.padding) != (3, 1, 1):
        raise ValueError("Conv(upsample=True) is for 3x3 kernels, stride 1, padding 1")
      # Fused on CPU, where it was measured (docs/benchmarks.md);
      # other backends keep the direct form until it is measured there.
      y = (upsample_conv3x3(x, w) if jax.default_backend() == "cpu"
           else conv2d(upsample_nearest(x), w, 1, 1))
    else:
      y = conv2d(x, w, self.stride, self.padding)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,), jnp.float32).astype(self.dtype)
    return y


def conv(features: int, kernel: int, stride: int = 1, padding: int = 0,
         dtype: Dtype = jnp.float32, use_bias: bool = False,
         name: str | None = None, **kwargs) -> Conv:
  """A PyTorch-style Conv2d with the official orthogonal initialisation."""
  return Conv(features, kernel, stride, padding, use_bias, dtype, name=name, **kwargs)


def glu(x: jax.Array) -> jax.Array:
  """Gated linear unit over the channel (last) axis: a * sigmoid(b)."""
  a, b = jnp.split(x, 2, axis=-1)
  return a * nn.sigmoid(b)


@jax.custom_jvp
def relu_keeping_mask(x: jax.Array) -> jax.Array:
  """max(x, 0), with jax.nn.relu's derivative (0 at x = 0), for networks
  differentiated only with respect to their input (the frozen ResNet-152 that
  STREAM runs on generated images). XLA fuses relu's `x > 0` into the backward
  pass and so keeps every float input alive until then; the barrier makes it
  keep the 1-byte mask instead: the GAN step's ResNet temporaries fall by
  about three quarters (docs/benchmarks.md). Values and gradients unchanged."""
  return jnp.maximum(x, jnp.zeros((), x.dtype))


@relu_keeping_mask.defjvp
def _relu_keeping_mask_jvp(primals, tangents):
  (x,), (t,) = primals, tangents
  mask = lax.optimization_barrier(x > 0)
  return relu_keeping_mask(x), jnp.where(mask, t, jnp.zeros((), t.dtype))


def upsample_nearest(x: jax.Array, factor: int = 2) -> jax.Array:
  """Nearest-neighbour upsampling of an NHWC tensor (nn.Upsample 'nearest')."""
  return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


class UpBlock(nn.Module):
  """Nearest x2 -> conv3x3 (in -> 2*out) -> BN -> GLU. On CPU the upsampling
  and the conv run fused (`upsample_conv3x3`): 2.25x fewer multiply-adds than
  the conv on the upsampled map, the largest conv of each generator stage."""
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    x = conv(2 * self.features, 3, padding=1, dtype=self.dtype, upsample=True)(x)
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
