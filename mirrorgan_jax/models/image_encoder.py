"""The DAMSM image encoder (AttnGAN's CNN_ENCODER).

Region features: Inception-v3 Mixed_6e (17x17x768) -> 1x1 conv -> nef; global
feature: Mixed_7c average-pooled (2048) -> Linear -> nef. Images arrive in
[-1, 1] and are bilinearly resized to 299 without ImageNet normalisation, as
the official code does. DAMSM pretraining trains only the two projections (the
whole network for the small from-scratch backbone); that is the optimizer's
business, not this module's, so gradients can still reach the input image.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mirrorgan_jax.models.inception import InceptionV3
from mirrorgan_jax.models.layers import torch_bias_init, uniform_init
from mirrorgan_jax.models.small_cnn import SmallCNN

Dtype = Any


def resize_bilinear(images: jax.Array, size: int) -> jax.Array:
  """Bilinear resize with half-pixel centres and no antialiasing, as PyTorch's
  `F.interpolate(mode='bilinear', align_corners=False)`."""
  b, _, _, c = images.shape
  return jax.image.resize(images, (b, size, size, c), "bilinear", antialias=False)


class ImageEncoder(nn.Module):
  """images (B, H, W, 3) in [-1, 1] -> (regions (B, h, w, nef), global (B, nef))."""
  embed_dim: int = 256
  backbone: str = "inception_v3"  # or "small"
  image_size: int = 299
  small_widths: Sequence[int] = (32, 64, 128, 256)
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, images, train: bool = False):
    if self.backbone == "inception_v3":
      x = resize_bilinear(images.astype(self.dtype), self.image_size)  # a matmul: compute dtype
      feats = InceptionV3(dtype=self.dtype, name="inception")(x, train=False)
      local, pooled = feats["Mixed_6e"], feats["pool"]
    elif self.backbone == "small":
      feats = SmallCNN(self.small_widths, self.dtype, name="cnn")(images, train)
      local, pooled = feats["local"], feats["global"]
    else:
      raise ValueError(f"unknown image encoder backbone {self.backbone!r}")
    regions = nn.Conv(self.embed_dim, (1, 1), use_bias=False, dtype=self.dtype,
                      kernel_init=uniform_init(0.1), name="emb_features")(local)
    code = nn.Dense(self.embed_dim, dtype=self.dtype,
                    kernel_init=uniform_init(0.1),
                    bias_init=torch_bias_init(pooled.shape[-1]),
                    name="emb_cnn_code")(pooled)
    return regions.astype(jnp.float32), code.astype(jnp.float32)

