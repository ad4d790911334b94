"""GLAM generator: conditioning augmentation, the initial stage and the
refinement stages with global-local attention, and one tanh image head per stage.

Widths follow the official G_NET: the initial stage starts at ngf * 2**n_up
channels (16 * ngf for the 64 px base: four up-blocks from 4x4) and ends at
ngf; refinement stages keep ngf. Smaller base sizes (the `shapes` configs) use
fewer up-blocks and proportionally narrower initial widths.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mirrorgan_jax.models.attention import GlobalLocalAttention
from mirrorgan_jax.models.layers import (ResBlock, UpBlock, batch_norm, conv, glu,
                                         orthogonal)

Dtype = Any


def twin_sources(n: int, every: int) -> np.ndarray:
  """Row indices that give each of `n` rows its noise with colour twins: the
  last row of every `every` takes the row before it (0: each row its own)."""
  rows = np.arange(n)
  if every:
    rows[every - 1::every] -= 1
  return rows


def num_upblocks(base_size: int) -> int:
  """Up-blocks from 4x4 to the base size (4 for 64 px)."""
  return (base_size // 4).bit_length() - 1


class ConditioningAugmentation(nn.Module):
  """sentence (B, nef) -> c (B, cond), mu, logvar. Linear -> GLU, then a
  reparameterised sample with noise from the 'noise' RNG stream (also at
  sampling time, as the official code)."""
  condition_dim: int = 100
  normalize_input: bool = False  # deviation when True: see configs/shapes.py

  @nn.compact
  def __call__(self, sentence, noise_scale: float = 1.0, twin_every: int = 0):
    """`noise_scale` (static) multiplies the noise: 1 draws c as the official
    code, 0 gives the mean code mu (`gan.sample_ca_noise`, sampling only).
    `twin_every` (static; colour twins): the last row of every `twin_every`
    takes the noise of the row before it (`twin_sources`)."""
    # Kept in float32 in every precision: exp(logvar) is sensitive.
    sentence = sentence.astype(jnp.float32)
    if self.normalize_input:  # unit RMS per example: DAMSM's cosine loss leaves the scale free
      sentence = sentence * jax.lax.rsqrt(jnp.mean(sentence**2, -1, keepdims=True) + 1e-8)
    x = nn.Dense(4 * self.condition_dim, kernel_init=orthogonal, name="fc")(sentence)
    x = glu(x)
    mu, logvar = x[:, :self.condition_dim], x[:, self.condition_dim:]
    eps = jax.random.normal(self.make_rng("noise"), mu.shape, mu.dtype)
    if twin_every:
      eps = eps[twin_sources(mu.shape[0], twin_every)]
    if noise_scale != 1.0:  # the official program stays as it was
      eps = noise_scale * eps
    return mu + jnp.exp(0.5 * logvar) * eps, mu, logvar


class InitStage(nn.Module):
  """[c ; z] -> Linear -> BN1d -> GLU -> (4, 4, width) -> up-blocks -> ngf."""
  ngf: int
  base_size: int = 64
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, c, z, train: bool):
    n_up = num_upblocks(self.base_size)
    width = self.ngf * 2**n_up
    x = jnp.concatenate([c, z], axis=-1).astype(self.dtype)
    x = nn.Dense(width * 4 * 4 * 2, use_bias=False, dtype=self.dtype,
                 kernel_init=orthogonal, name="fc")(x)
    x = glu(batch_norm(train, self.dtype, name="fc_bn")(x))
    # PyTorch's view(-1, width, 4, 4) is channel-major: keep that layout so
    # converted weights need no permutation.
    x = x.reshape(x.shape[0], width, 4, 4).transpose(0, 2, 3, 1)
    for i in range(n_up):
      x = UpBlock(width // 2**(i + 1), self.dtype, name=f"upsample{i + 1}")(x, train)
    return x


class NextStage(nn.Module):
  """GLAM, then cat[h, word ctx, sentence ctx] -> 1x1 conv (3ngf -> 2ngf) ->
  R_NUM residual blocks -> up-block (2ngf -> ngf): twice the resolution."""
  ngf: int
  r_num: int = 2
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, h, c, words, mask, train: bool):
    word_ctx, sent_ctx, word_att, _ = GlobalLocalAttention(
        self.ngf, self.dtype, name="att")(h, c, words, mask)
    x = jnp.concatenate([h, word_ctx, sent_ctx], axis=-1)
    x = conv(2 * self.ngf, 1, dtype=self.dtype, name="conv")(x)
    for i in range(self.r_num):
      x = ResBlock(self.dtype, name=f"residual{i}")(x, train)
    return UpBlock(self.ngf, self.dtype, name="upsample")(x, train), word_att


class ImageHead(nn.Module):
  """conv3x3 (ngf -> 3, no bias) -> tanh, returned in float32. With
  `subpixels` s > 1 (a deviation, see configs/shapes.py) the conv gives 3 s*s
  channels, each pixel s x s sub-pixels, and the pixel is their tanh's mean: a
  box filter over a finer grid, as anti-aliased images are rendered.

  With `masked` (a deviation, see configs/shapes.py) each sub-pixel is a colour
  laid over the black background (-1) with a coverage in [0, 1]: the conv gives
  5 channels per sub-pixel, the colour tanh(3 of them) and the coverage the
  product of the sigmoids of the other two, -1 + (colour + 1) * coverage."""
  dtype: Dtype = jnp.float32
  subpixels: int = 1
  masked: bool = False

  @nn.compact
  def __call__(self, h):
    k = self.subpixels**2
    per_subpixel = 5 if self.masked else 3
    y = conv(per_subpixel * k, 3, padding=1, dtype=self.dtype, name="conv")(h)
    # Channel j * per_subpixel + c is channel c of sub-pixel j.
    y = y.astype(jnp.float32).reshape(y.shape[:-1] + (k, per_subpixel))
    if self.masked:
      # Two sigmoids' product: an axis-aligned edge's coverage times the
      # other axis's, as a box filter covers a square's corner.
      coverage = nn.sigmoid(y[..., 3:4]) * nn.sigmoid(y[..., 4:5])
      # Read by the colour twins' term (loss.colour_twin_weight) when the
      # caller makes 'intermediates' mutable; otherwise not kept.
      self.sow("intermediates", "coverage", coverage[..., 0])
      x = -1.0 + (jnp.tanh(y[..., :3]) + 1.0) * coverage
    else:
      x = jnp.tanh(y)
    return x.mean(-2)  # the box filter over the sub-pixels (one: the pixel)


class Generator(nn.Module):
  """(z, sentence, words, mask) -> images per stage (float32, [-1, 1]), word
  attention maps per refinement stage (B, T, H, W), mu, logvar. `ca_noise`
  scales conditioning augmentation's noise (1 in training); with
  `twin_every` the last row of every `twin_every` shares the row before's
  (colour twins)."""
  ngf: int = 32
  r_num: int = 2
  condition_dim: int = 100
  num_stages: int = 3
  base_size: int = 64
  dtype: Dtype = jnp.float32
  ca_normalize_input: bool = False
  image_subpixels: int = 1
  masked_image_head: bool = False

  @nn.compact
  def __call__(self, z, sentence, words, mask, train: bool = True, ca_noise: float = 1.0,
               twin_every: int = 0):
    c, mu, logvar = ConditioningAugmentation(self.condition_dim, self.ca_normalize_input,
                                             name="ca_net")(sentence, ca_noise, twin_every)
    words = words.astype(self.dtype)
    h = InitStage(self.ngf, self.base_size, self.dtype, name="h_net1")(c, z, train)
    head = functools.partial(ImageHead, self.dtype, self.image_subpixels,
                             self.masked_image_head)
    images = [head(name="img_net1")(h)]
    attention = []
    for i in range(1, self.num_stages):
      h, att = NextStage(self.ngf, self.r_num, self.dtype,
                         name=f"h_net{i + 1}")(h, c.astype(self.dtype), words, mask, train)
      images.append(head(name=f"img_net{i + 1}")(h))
      attention.append(att)
    return tuple(images), tuple(attention), mu, logvar
