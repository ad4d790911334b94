"""Discriminators, one per scale (AttnGAN's D_NET64/128/256).

Trunk: stride-2 4x4 convs down to 4x4 (the first without BatchNorm), LeakyReLU
0.2. At 64 px that is the official `encode_image_by_16times` (3 -> ndf -> 2ndf ->
4ndf -> 8ndf); each doubling of the image size adds one down-block (doubling the
width) and one 3x3 conv (halving it back), as D_NET128 and D_NET256. Smaller
images use fewer trunk convs and so end narrower.
With `edge_gain` > 0 (a deviation, shapes only: `loss.edge_d_weight`) the trunk
reads two more channels, `edge_channels`: an edge critic.
Heads: an unconditional logit (4x4 conv, stride 4, with bias) and a
sentence-conditional one (tile the raw STEM sentence to 4x4, concat, 3x3 conv
-> BN -> LeakyReLU, then the same 4x4 conv). Logits are returned in float32.

The D update sees several batches (real and fake images; three image-sentence
pairs in the conditional head), passed as tuples. The layers with small outputs
and large kernels (`_conv_parts`) and the heads run once on them stacked along
the batch; each BatchNorm normalises every batch with its own statistics and
moves its running averages batch after batch in the official order, so the
results are the official separate calls' (a conv treats each image apart).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mirrorgan_jax.models.layers import batch_norm, conv, conv2d, orthogonal, torch_bias_init

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


def _stacked(f, parts):
  """f on the batches of `parts` stacked, split back into parts. Stacked
  example by example ((B, parts) -> B * parts rows), so that where the batch
  is sharded over devices each device keeps its own examples."""
  if len(parts) == 1:
    return (f(parts[0]),)
  x = jnp.stack(parts, axis=1)
  y = f(x.reshape((-1,) + x.shape[2:]))
  y = y.reshape((x.shape[0], len(parts)) + y.shape[1:])
  return tuple(y[:, k] for k in range(len(parts)))


# Outputs of at most this many pixels per image (8x8) run the batches stacked.
STACK_MAX_PIXELS = 64


def _conv_parts(layer: nn.Module, parts):
  """A conv on each batch of `parts`. Where its output is small (the layers
  whose kernels are large), on the batches stacked: one kernel gradient
  instead of one per batch (birds, batch 2: XLA's temporaries 1,276 -> 1,056
  MiB, docs/benchmarks.md). On the large early maps the batches run apart,
  which measured faster than stacked (the copies of the stacked batch)."""
  h, w = parts[0].shape[1:3]
  if (h // layer.stride) * (w // layer.stride) <= STACK_MAX_PIXELS:
    return _stacked(layer, parts)
  return tuple(layer(p) for p in parts)


def edge_channels(images: jax.Array, gain: float) -> jax.Array:
  """(B, H, W, 3) -> (B, H, W, 5): the images, then the differences of each
  pixel's largest channel (its coverage, whatever the colour) from its right
  and from its lower neighbour (0 on the last column and row), times `gain`.
  A D of this architecture reading the image alone does not learn that a
  square's edge runs a fraction of a pixel off the axis; with these channels it
  does (docs/shapes_default_job.md, twenty-second and twenty-third sittings)."""
  m = images.max(axis=-1)
  dx = jnp.pad(m[:, :, 1:] - m[:, :, :-1], ((0, 0), (0, 0), (0, 1)))
  dy = jnp.pad(m[:, 1:, :] - m[:, :-1, :], ((0, 0), (0, 1), (0, 0)))
  return jnp.concatenate([images, gain * dx[..., None], gain * dy[..., None]], axis=-1)


class DTrunk(nn.Module):
  image_size: int
  ndf: int
  dtype: Dtype = jnp.float32
  edge_gain: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool):
    """x: a batch of images, or a tuple of batches (then a tuple of features,
    each batch normalised with its own statistics, in order)."""
    trunk, downs, convs = trunk_widths(self.image_size, self.ndf)
    parts = tuple(p.astype(self.dtype) for p in (x if isinstance(x, tuple) else (x,)))
    if self.edge_gain:
      parts = tuple(edge_channels(p, self.edge_gain) for p in parts)

    def block(conv_layer, bn_name, parts):
      parts = _conv_parts(conv_layer, parts)
      if bn_name:
        bn = batch_norm(train, self.dtype, name=bn_name)
        parts = tuple(bn(p) for p in parts)
      return tuple(_lrelu(p) for p in parts)

    for i, w in enumerate(trunk):
      parts = block(conv(w, 4, stride=2, padding=1, dtype=self.dtype, name=f"down{i}"),
                    f"down{i}_bn" if i > 0 else None, parts)
    for i, w in enumerate(downs):
      parts = block(conv(w, 4, stride=2, padding=1, dtype=self.dtype, name=f"extra_down{i}"),
                    f"extra_down{i}_bn", parts)
    for i, w in enumerate(convs):
      parts = block(conv(w, 3, padding=1, dtype=self.dtype, name=f"extra_conv{i}"),
                    f"extra_conv{i}_bn", parts)
    return parts if isinstance(x, tuple) else parts[0]


def _valid_taps(n: int) -> jnp.ndarray:
  """(n, 3) 0/1: which of a 3x3 kernel's rows (or columns) read inside an
  n-pixel side at each output position, with padding 1."""
  return jnp.array([[float(0 <= i + d - 1 < n) for d in range(3)] for i in range(n)])


class JointConv(nn.Module):
  """The conditional head's 3x3 conv (padding 1) of the features with the
  sentence tiled over them, `conv(concat(x, tile(s)))`, computed as its two
  parts: the kernel's image slice on each distinct feature batch (the real
  images' features serve both their sentence and the mismatched one), and its
  sentence slice, whose input is constant over the map, as the sentence times
  the sum of the taps that fall inside the map at each position. The same
  kernel as the official concatenated conv (its name and shape; up to float
  rounding), without its input's tiled copies or a third pass over the real
  features (its kernel gradient was the 32 px shapes D's largest op;
  docs/benchmarks.md)."""
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, parts, sentences):
    c, nef = parts[0].shape[-1], sentences[0].shape[-1]
    w = self.param("kernel", orthogonal, (3, 3, c + nef, self.features), jnp.float32)
    w = w.astype(self.dtype)
    w_image, w_sentence = w[:, :, :c], w[:, :, c:]
    distinct, which = [], []  # each feature batch once (by identity); each part's index
    for x in parts:
      found = [k for k, y in enumerate(distinct) if x is y]
      which.append(found[0] if found else len(distinct))
      if not found:
        distinct.append(x)
    image = _stacked(lambda x: conv2d(x, w_image, 1, 1), tuple(distinct))
    h, wd = parts[0].shape[1:3]
    rows, cols = _valid_taps(h).astype(self.dtype), _valid_taps(wd).astype(self.dtype)
    out = []
    for k, s in zip(which, sentences):
      taps = jnp.einsum("bk,xyko->bxyo", s.astype(self.dtype), w_sentence)
      out.append(image[k] + jnp.einsum("ix,jy,bxyo->bijo", rows, cols, taps))
    return tuple(out)


class DLogits(nn.Module):
  """features (B, 4, 4, C) [, sentence (B, nef)] -> logits (B,); or tuples of
  them (then a tuple of logits, each batch normalised on its own, in order)."""
  conditional: bool
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, features, sentence=None, train: bool = True):
    single = not isinstance(features, tuple)
    parts = (features,) if single else features
    width = parts[0].shape[-1]
    if self.conditional:
      sentences = (sentence,) if single else sentence
      parts = JointConv(width, self.dtype, name="joint_conv")(parts, sentences)
      bn = batch_norm(train, self.dtype, name="joint_bn")
      parts = tuple(_lrelu(bn(x)) for x in parts)
    outlogits = conv(1, 4, stride=4, dtype=self.dtype, use_bias=True,
                     bias_init=torch_bias_init(16 * width), name="outlogits")
    logits = tuple(y.reshape(y.shape[0]).astype(jnp.float32)
                   for y in _stacked(outlogits, parts))
    return logits[0] if single else logits


class Discriminator(nn.Module):
  image_size: int = 64
  ndf: int = 64
  dtype: Dtype = jnp.float32
  edge_gain: float = 0.0  # > 0: the edge critic (`edge_channels`), a deviation

  def setup(self):
    self.trunk = DTrunk(self.image_size, self.ndf, self.dtype, self.edge_gain)
    self.uncond = DLogits(False, self.dtype)
    self.cond = DLogits(True, self.dtype)

  def __call__(self, images, sentence, train: bool = True):
    """The generator's view: (unconditional, conditional) logits of `images`."""
    f = self.trunk(images, train)
    cond = self.cond(f, sentence, train)
    return self.uncond(f, train=train), cond

  def discriminate(self, real, fake, sentence, wrong_sentence, negative=None,
                   train: bool = True):
    """The discriminator's view, with the official calls' results and running
    statistics (trunk on real, on fake; conditional head on (real, sentence),
    (fake, sentence), (real, wrong sentence); unconditional head on real,
    fake), the small layers and heads run once on the stacked batches: a dict
    of logits. With `negative` (a batch of real images made wrong, which the
    D should refuse: `negatives.blurred`), each call sees it after the
    official batches, with the sentence in the conditional head: logits
    'negative' and 'cond_negative' too."""
    extra = () if negative is None else (negative,)  # after the official batches
    features = self.trunk((real, fake) + extra, train)
    real_f, fake_f = features[:2]
    cond = self.cond((real_f, fake_f, real_f) + features[2:],
                     (sentence, sentence, wrong_sentence) + (sentence,) * len(extra), train)
    uncond = self.uncond(features, train=train)
    logits = {"cond_real": cond[0], "cond_fake": cond[1], "cond_wrong": cond[2],
              "real": uncond[0], "fake": uncond[1]}
    if extra:
      logits.update(negative=uncond[2], cond_negative=cond[3])
    return logits
