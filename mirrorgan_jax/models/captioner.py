"""STREAM: the image captioner that re-describes generated images.

Encoder (MirrorGAN's CAPTION_CNN): backbone -> Linear -> BatchNorm1d (PyTorch
momentum 0.01) -> image embedding. Decoder (CAPTION_RNN): one-layer LSTM with
teacher forcing exactly as the official code: the image embedding is the input
at step 0, then the embeddings of words 0..T-2; the target at step t is word t;
there is no start token and no appended end token (vocabulary id 0 is padding).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mirrorgan_jax.models.image_encoder import resize_bilinear
from mirrorgan_jax.models.layers import uniform_init
from mirrorgan_jax.models.resnet import ResNet
from mirrorgan_jax.models.small_cnn import SmallCNN
from mirrorgan_jax.models.text_encoder import lstm_cell

Dtype = Any

IMAGENET_MEAN = jnp.array([0.485, 0.456, 0.406])
IMAGENET_STD = jnp.array([0.229, 0.224, 0.225])


def imagenet_normalize(images: jax.Array) -> jax.Array:
  """[-1, 1] -> ImageNet mean/std normalisation.

  Deviation: the official code feeds [-1, 1] straight into the ImageNet ResNet,
  while the captioning code it points to for STREAM pretraining normalises with
  ImageNet statistics; we normalise in both phases so inputs stay in-distribution.
  """
  return ((images + 1.0) / 2.0 - IMAGENET_MEAN) / IMAGENET_STD


class CaptionEncoder(nn.Module):
  """images (B, H, W, 3) in [-1, 1] -> image embedding (B, embed_size)."""
  embed_size: int = 256
  backbone: str = "resnet152"  # or "small" (trained from scratch)
  image_size: int = 224
  small_widths: Sequence[int] = (32, 64, 128, 256)
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, images, train: bool = False):
    if self.backbone == "resnet152":
      # Resized in the compute dtype (the resize is a matmul; in bf16 the
      # image is rounded to bf16 before it rather than after, as the ResNet's
      # input is anyway), normalised in float32.
      x = imagenet_normalize(resize_bilinear(images.astype(self.dtype), self.image_size))
      # Frozen ImageNet backbone: always inference-mode BatchNorm.
      feats = ResNet(152, self.dtype, name="resnet")(x.astype(self.dtype), train=False)
    elif self.backbone == "small":
      feats = SmallCNN(self.small_widths, self.dtype, name="cnn")(images, train)["global"]
    else:
      raise ValueError(f"unknown STREAM backbone {self.backbone!r}")
    x = nn.Dense(self.embed_size, dtype=self.dtype,
                 kernel_init=nn.initializers.normal(0.02), name="linear")(feats)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-5,
                     dtype=self.dtype, name="bn")(x)
    return x.astype(jnp.float32)


def _scan_time(body, length=None):
  """`body(module, carry, x) -> (carry, y)` over time (axis 1 of x and y), the
  module's parameters shared by every step. A scan, not a Python loop: unrolled,
  each of the T steps compiled to kernels of its own, forward and backward
  (birds' STREAM decoder: 7.6 s of compile and 590 fusions; scanned, 1.2 s and
  85, and faster to run; docs/benchmarks.md)."""
  return nn.scan(body, variable_broadcast="params", split_rngs={"params": False},
                 in_axes=1, out_axes=1, length=length)


class CaptionDecoder(nn.Module):
  vocab_size: int
  embed_size: int = 256
  hidden_size: int = 512
  dtype: Dtype = jnp.float32

  def setup(self):
    self.embed = nn.Embed(self.vocab_size, self.embed_size,
                          embedding_init=uniform_init(0.1))
    self.lstm = lstm_cell(self.hidden_size)
    self.linear = nn.Dense(self.vocab_size, dtype=self.dtype,
                           kernel_init=uniform_init(0.1))

  def _zero_carry(self, batch):
    z = jnp.zeros((batch, self.hidden_size), jnp.float32)
    return (z, z)

  def __call__(self, features, captions):
    """Teacher forcing: features (B, E), captions (B, T) -> logits (B, T, V)."""
    inputs = jnp.concatenate(
        [features[:, None, :], self.embed(captions[:, :-1])], axis=1)
    _, hs = _scan_time(lambda cell, carry, x: cell(carry, x))(
        self.lstm, self._zero_carry(features.shape[0]), inputs)
    return self.linear(hs).astype(jnp.float32)

  def greedy(self, features, max_len: int = 20):
    """Greedy decoding: (B, E) -> word ids (B, max_len)."""
    def step(decoder, carry, _):
      lstm_carry, x = carry
      lstm_carry, h = decoder.lstm(lstm_carry, x)
      word = jnp.argmax(decoder.linear(h), axis=-1)
      return (lstm_carry, decoder.embed(word)), word

    carry = (self._zero_carry(features.shape[0]), features)
    _, ids = _scan_time(step, length=max_len)(self, carry, None)
    return ids


class Captioner(nn.Module):
  """STREAM: encoder + decoder. `__call__` is teacher-forced; `greedy_decode`
  writes captions for display."""
  vocab_size: int
  embed_size: int = 256
  hidden_size: int = 512
  backbone: str = "resnet152"
  image_size: int = 224
  small_widths: Sequence[int] = (32, 64, 128, 256)
  dtype: Dtype = jnp.float32

  def setup(self):
    self.encoder = CaptionEncoder(self.embed_size, self.backbone, self.image_size,
                                  self.small_widths, self.dtype)
    self.decoder = CaptionDecoder(self.vocab_size, self.embed_size,
                                  self.hidden_size, self.dtype)

  def __call__(self, images, captions, train: bool = False):
    return self.decoder(self.encoder(images, train), captions)

  def greedy_decode(self, images, max_len: int = 20):
    return self.decoder.greedy(self.encoder(images, False), max_len)
