"""Inception-v3 with torchvision's architecture (and pytorch-fid's variant).

Used three times: the DAMSM image encoder (Mixed_6e and Mixed_7c features),
FID (2048-d pool features) and IS (class logits). Submodule names follow
torchvision's so that converted weights map one to one. Input: NHWC at 299x299.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

Dtype = Any


class BasicConv2d(nn.Module):
  """conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU."""
  features: int
  kernel: tuple[int, int]
  stride: int = 1
  padding: tuple[int, int] = (0, 0)
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    ph, pw = self.padding
    x = nn.Conv(self.features, self.kernel, strides=(self.stride, self.stride),
                padding=((ph, ph), (pw, pw)), use_bias=False, dtype=self.dtype,
                name="conv")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                     epsilon=1e-3, dtype=self.dtype, name="bn")(x)
    return nn.relu(x)


def _avg_pool3(x, count_include_pad: bool):
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                     count_include_pad=count_include_pad)


def _max_pool3(x, stride: int, pad: int = 0):
  return nn.max_pool(x, (3, 3), strides=(stride, stride),
                     padding=((pad, pad), (pad, pad)))


class InceptionA(nn.Module):
  pool_features: int
  fid: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    c = lambda f, k, p=(0, 0), name=None: BasicConv2d(  # noqa: E731
        f, k, padding=p, dtype=self.dtype, name=name)
    b1 = c(64, (1, 1), name="branch1x1")(x, train)
    b5 = c(48, (1, 1), name="branch5x5_1")(x, train)
    b5 = c(64, (5, 5), (2, 2), name="branch5x5_2")(b5, train)
    b3 = c(64, (1, 1), name="branch3x3dbl_1")(x, train)
    b3 = c(96, (3, 3), (1, 1), name="branch3x3dbl_2")(b3, train)
    b3 = c(96, (3, 3), (1, 1), name="branch3x3dbl_3")(b3, train)
    bp = _avg_pool3(x, count_include_pad=not self.fid)
    bp = c(self.pool_features, (1, 1), name="branch_pool")(bp, train)
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    b3 = BasicConv2d(384, (3, 3), stride=2, dtype=self.dtype,
                     name="branch3x3")(x, train)
    bd = BasicConv2d(64, (1, 1), dtype=self.dtype, name="branch3x3dbl_1")(x, train)
    bd = BasicConv2d(96, (3, 3), padding=(1, 1), dtype=self.dtype,
                     name="branch3x3dbl_2")(bd, train)
    bd = BasicConv2d(96, (3, 3), stride=2, dtype=self.dtype,
                     name="branch3x3dbl_3")(bd, train)
    return jnp.concatenate([b3, bd, _max_pool3(x, 2)], axis=-1)


class InceptionC(nn.Module):
  channels_7x7: int
  fid: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    c7 = self.channels_7x7
    c = lambda f, k, p=(0, 0), name=None: BasicConv2d(  # noqa: E731
        f, k, padding=p, dtype=self.dtype, name=name)
    b1 = c(192, (1, 1), name="branch1x1")(x, train)
    b7 = c(c7, (1, 1), name="branch7x7_1")(x, train)
    b7 = c(c7, (1, 7), (0, 3), name="branch7x7_2")(b7, train)
    b7 = c(192, (7, 1), (3, 0), name="branch7x7_3")(b7, train)
    bd = c(c7, (1, 1), name="branch7x7dbl_1")(x, train)
    bd = c(c7, (7, 1), (3, 0), name="branch7x7dbl_2")(bd, train)
    bd = c(c7, (1, 7), (0, 3), name="branch7x7dbl_3")(bd, train)
    bd = c(c7, (7, 1), (3, 0), name="branch7x7dbl_4")(bd, train)
    bd = c(192, (1, 7), (0, 3), name="branch7x7dbl_5")(bd, train)
    bp = _avg_pool3(x, count_include_pad=not self.fid)
    bp = c(192, (1, 1), name="branch_pool")(bp, train)
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    c = lambda f, k, p=(0, 0), s=1, name=None: BasicConv2d(  # noqa: E731
        f, k, stride=s, padding=p, dtype=self.dtype, name=name)
    b3 = c(192, (1, 1), name="branch3x3_1")(x, train)
    b3 = c(320, (3, 3), s=2, name="branch3x3_2")(b3, train)
    b7 = c(192, (1, 1), name="branch7x7x3_1")(x, train)
    b7 = c(192, (1, 7), (0, 3), name="branch7x7x3_2")(b7, train)
    b7 = c(192, (7, 1), (3, 0), name="branch7x7x3_3")(b7, train)
    b7 = c(192, (3, 3), s=2, name="branch7x7x3_4")(b7, train)
    return jnp.concatenate([b3, b7, _max_pool3(x, 2)], axis=-1)


class InceptionE(nn.Module):
  # pytorch-fid: Mixed_7b averages without the padding, Mixed_7c max-pools.
  fid_pool: str | None = None  # None (torchvision), "avg" or "max"
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    c = lambda f, k, p=(0, 0), name=None: BasicConv2d(  # noqa: E731
        f, k, padding=p, dtype=self.dtype, name=name)
    b1 = c(320, (1, 1), name="branch1x1")(x, train)
    b3 = c(384, (1, 1), name="branch3x3_1")(x, train)
    b3 = jnp.concatenate([c(384, (1, 3), (0, 1), name="branch3x3_2a")(b3, train),
                          c(384, (3, 1), (1, 0), name="branch3x3_2b")(b3, train)],
                         axis=-1)
    bd = c(448, (1, 1), name="branch3x3dbl_1")(x, train)
    bd = c(384, (3, 3), (1, 1), name="branch3x3dbl_2")(bd, train)
    bd = jnp.concatenate([c(384, (1, 3), (0, 1), name="branch3x3dbl_3a")(bd, train),
                          c(384, (3, 1), (1, 0), name="branch3x3dbl_3b")(bd, train)],
                         axis=-1)
    if self.fid_pool == "max":
      bp = _max_pool3(x, 1, 1)
    else:
      bp = _avg_pool3(x, count_include_pad=self.fid_pool is None)
    bp = c(192, (1, 1), name="branch_pool")(bp, train)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
  """Returns a dict of endpoints: Mixed_6e (B,17,17,768), Mixed_7c (B,8,8,2048),
  pool (B, 2048) and, with num_classes > 0, logits (B, num_classes)."""
  num_classes: int = 0
  fid: bool = False  # pytorch-fid's FIDInception blocks
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    d, fid = self.dtype, self.fid
    x = BasicConv2d(32, (3, 3), stride=2, dtype=d, name="Conv2d_1a_3x3")(x, train)
    x = BasicConv2d(32, (3, 3), dtype=d, name="Conv2d_2a_3x3")(x, train)
    x = BasicConv2d(64, (3, 3), padding=(1, 1), dtype=d,
                    name="Conv2d_2b_3x3")(x, train)
    x = _max_pool3(x, 2)
    x = BasicConv2d(80, (1, 1), dtype=d, name="Conv2d_3b_1x1")(x, train)
    x = BasicConv2d(192, (3, 3), dtype=d, name="Conv2d_4a_3x3")(x, train)
    x = _max_pool3(x, 2)
    x = InceptionA(32, fid, d, name="Mixed_5b")(x, train)
    x = InceptionA(64, fid, d, name="Mixed_5c")(x, train)
    x = InceptionA(64, fid, d, name="Mixed_5d")(x, train)
    x = InceptionB(d, name="Mixed_6a")(x, train)
    x = InceptionC(128, fid, d, name="Mixed_6b")(x, train)
    x = InceptionC(160, fid, d, name="Mixed_6c")(x, train)
    x = InceptionC(160, fid, d, name="Mixed_6d")(x, train)
    x = InceptionC(192, fid, d, name="Mixed_6e")(x, train)
    out = {"Mixed_6e": x}
    x = InceptionD(d, name="Mixed_7a")(x, train)
    x = InceptionE("avg" if fid else None, d, name="Mixed_7b")(x, train)
    x = InceptionE("max" if fid else None, d, name="Mixed_7c")(x, train)
    out["Mixed_7c"] = x
    out["pool"] = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    if self.num_classes:
      out["logits"] = nn.Dense(self.num_classes, name="fc")(out["pool"])
    return out
