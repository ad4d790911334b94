"""Image preprocessing of the official loader (AttnGAN/MirrorGAN `get_imgs`),
in numpy and PIL on the host: bounding-box crop, shorter side to 304, a 256
crop, a horizontal flip, then every stage's size with PIL's bilinear filter
(antialiased when shrinking, as torchvision's `Scale` on PIL images).

Images stay uint8 here; `to_model_range` maps them to [-1, 1] on the device,
which is ToTensor + Normalize(0.5, 0.5): x / 127.5 - 1.
"""

import io
from typing import Sequence

import numpy as np
from PIL import Image


def decode_rgb(data: bytes, what: str) -> Image.Image:
  """A JPEG/PNG as an RGB image (grey and CMYK files converted, as the official
  `Image.open(path).convert('RGB')`); a corrupt file is an error naming `what`."""
  try:
    image = Image.open(io.BytesIO(data))
    image.load()  # decodes fully: a truncated file fails here, not later
    return image.convert("RGB")
  except Exception as e:
    raise ValueError(f"{what}: not a readable image ({type(e).__name__}: {e})") from e


def bbox_crop_box(bbox: Sequence[int], width: int, height: int) -> tuple[int, int, int, int]:
  """The official CUB crop: a square of side 1.5 * max(w, h) centred on the box,
  clipped to the image, with the loader's integer arithmetic (the box is read
  with `astype(int)`, then r = int(0.75 * max(w, h)) and integer centres)."""
  x, y, w, h = (int(v) for v in bbox)
  r = int(max(w, h) * 0.75)
  cx = int((2 * x + w) / 2)
  cy = int((2 * y + h) / 2)
  return max(0, cx - r), max(0, cy - r), min(width, cx + r), min(height, cy + r)


def crop_to_bbox(image: Image.Image, bbox: Sequence[int] | None) -> Image.Image:
  if bbox is None:
    return image
  return image.crop(bbox_crop_box(bbox, *image.size))


def resize_shorter(image: Image.Image, size: int) -> Image.Image:
  """torchvision `Scale(size)`: the shorter side to `size`, the longer side
  int(size * long / short), bilinear."""
  w, h = image.size
  if w <= h:
    ow, oh = size, int(size * h / w)
  else:
    ow, oh = int(size * w / h), size
  if (ow, oh) == (w, h):
    return image
  return image.resize((ow, oh), Image.BILINEAR)


def crop_and_flip(image: Image.Image, size: int,
                  rng: np.random.Generator | None) -> Image.Image:
  """A random `size` crop and a flip with probability 1/2 (training), or the
  centre crop without flip when `rng` is None (evaluation; deviation: the
  official loader crops and flips at random at test time too)."""
  w, h = image.size
  if w < size or h < size:
    raise ValueError(f"image of {w}x{h} is smaller than the {size} crop")
  if rng is None:
    top, left = int(round((h - size) / 2)), int(round((w - size) / 2))
  else:
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
  image = image.crop((left, top, left + size, top + size))
  if rng is not None and rng.random() < 0.5:
    image = image.transpose(Image.FLIP_LEFT_RIGHT)
  return image


def stage_images(square: Image.Image, sizes: Sequence[int]) -> tuple[np.ndarray, ...]:
  """One uint8 (s, s, 3) array per stage size, each resized from `square`."""
  out = []
  for s in sizes:
    img = square if square.size == (s, s) else square.resize((s, s), Image.BILINEAR)
    out.append(np.asarray(img, np.uint8))
  return tuple(out)


def official_stages(image: Image.Image, bbox: Sequence[int] | None, sizes: Sequence[int],
                    rng: np.random.Generator | None) -> tuple[np.ndarray, ...]:
  """The whole official chain for a real photograph; the load size is
  int(largest * 76 / 64) (304 for 256)."""
  largest = max(sizes)
  image = resize_shorter(crop_to_bbox(image, bbox), int(largest * 76 / 64))
  return stage_images(crop_and_flip(image, largest, rng), sizes)


def to_model_range(images):
  """uint8 -> float32 in [-1, 1] (works on numpy and jax arrays)."""
  return images.astype("float32") / 127.5 - 1.0
