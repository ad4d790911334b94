"""Discriminators, one per scale (AttnGAN's D_NET64/128/256).

Trunk: stride-2 4x4 convs down to 4x4 (the first without BatchNorm), LeakyReLU
0.2. At 64 px that is the official `encode_image_by_16times` (3 -> ndf -> 2ndf ->
4ndf -> 8ndf); each doubling of the image size adds one down-block (doubling the
width) and one 3x3 conv (halving it back), as D_NET128 and D_NET256. Smaller
images use fewer trunk convs and so end narrower.
Heads: an unconditional logit (4x4 conv, stride 4, with bias) and a
sentence-conditional one (tile the raw STEM sentence to 4x4, concat, 3x3 conv
-> BN -> LeakyReLU, then the same 4x4 conv). Logits are returned in float32.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mirrorgan_jax.models.layers import batch_norm, conv, torch_bias_init

Dtype = Any


def trunk_widths(image_size: int, ndf: int) -> tuple[list[int], list[int], list[int]]:
  """(stride-2 trunk widths, extra down-block widths, 3x3 conv widths)."""
  n_down = (image_size // 4).bit_length() - 1
  trunk = [ndf * 2**i for i in range(min(n_down, 4))]
  downs = [trunk[-1] * 2**(k + 1) for k in range(n_down - 4)]
  convs = [trunk[-1] * 2**k for k in reversed(range(n_down - 4))]
  return trunk, downs, convs


def _lrelu(x):
  return nn.leaky_relu(x, 0.2)


class DTrunk(nn.Module):
  image_size: int
  ndf: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    trunk, downs, convs = trunk_widths(self.image_size, self.ndf)
    x = x.astype(self.dtype)
    for i, w in enumerate(trunk):
      x = conv(w, 4, stride=2, padding=1, dtype=self.dtype, name=f"down{i}")(x)
      if i > 0:
        x = batch_norm(train, self.dtype, name=f"down{i}_bn")(x)
      x = _lrelu(x)
    for i, w in enumerate(downs):
      x = conv(w, 4, stride=2, padding=1, dtype=self.dtype, name=f"extra_down{i}")(x)
      x = _lrelu(batch_norm(train, self.dtype, name=f"extra_down{i}_bn")(x))
    for i, w in enumerate(convs):
      x = conv(w, 3, padding=1, dtype=self.dtype, name=f"extra_conv{i}")(x)
      x = _lrelu(batch_norm(train, self.dtype, name=f"extra_conv{i}_bn")(x))
    return x


class DLogits(nn.Module):
  """features (B, 4, 4, C) [, sentence (B, nef)] -> logits (B,)."""
  conditional: bool
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, features, sentence=None, train: bool = True):
    width = features.shape[-1]
    x = features
    if self.conditional:
      s = jnp.broadcast_to(sentence[:, None, None, :].astype(self.dtype),
                           x.shape[:3] + (sentence.shape[-1],))
      x = jnp.concatenate([x, s], axis=-1)
      x = conv(width, 3, padding=1, dtype=self.dtype, name="joint_conv")(x)
      x = _lrelu(batch_norm(train, self.dtype, name="joint_bn")(x))
    x = conv(1, 4, stride=4, dtype=self.dtype, use_bias=True,
             bias_init=torch_bias_init(16 * width), name="outlogits")(x)
    return x.reshape(x.shape[0]).astype(jnp.float32)


class Discriminator(nn.Module):
  image_size: int = 64
  ndf: int = 64
  dtype: Dtype = jnp.float32

  def setup(self):
    self.trunk = DTrunk(self.image_size, self.ndf, self.dtype)
    self.uncond = DLogits(False, self.dtype)
    self.cond = DLogits(True, self.dtype)

  def __call__(self, images, sentence, train: bool = True):
    """The generator's view: (unconditional, conditional) logits of `images`."""
    f = self.trunk(images, train)
    cond = self.cond(f, sentence, train)
    return self.uncond(f, train=train), cond

  def discriminate(self, real, fake, sentence, wrong_sentence, train: bool = True):
    """The discriminator's view, in the official call order (trunk on real, on
    fake, then the conditional and unconditional heads): a dict of logits."""
    real_f = self.trunk(real, train)
    fake_f = self.trunk(fake, train)
    return {
        "cond_real": self.cond(real_f, sentence, train),
        "cond_fake": self.cond(fake_f, sentence, train),
        "cond_wrong": self.cond(real_f, wrong_sentence, train),
        "real": self.uncond(real_f, train=train),
        "fake": self.uncond(fake_f, train=train),
    }
