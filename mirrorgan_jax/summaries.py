"""What the training program leaves behind besides checkpoints: TensorBoard
events, a metrics.jsonl that needs no TensorBoard to read, the run's config,
package versions and devices, image grids, attention maps, a progress bar.

Only process 0 of a multi-process run writes: every writer takes `enabled`
(the caller passes `jax.process_index() == 0`) and is a no-op without it, so
the training loop calls them unconditionally on every host.
"""

import importlib.metadata
import json
import math
import os
import platform
import time
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Packages whose versions explain a run's numbers (their distribution names).
_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain",
             "tensorflow-datasets", "ml-collections", "numpy", "pillow", "tensorboardX")

_RESERVED = ("phase", "step", "time")


def _json_float(v) -> float | str:
  """A plain float, or "nan"/"inf"/"-inf": bare NaN is not JSON and would
  break every reader of metrics.jsonl after a diverged step."""
  v = float(v)
  if math.isnan(v):
    return "nan"
  if math.isinf(v):
    return "inf" if v > 0 else "-inf"
  return v


class RunLog:
  """TensorBoard events under <workdir>/tb/<phase>/ and one JSON line per
  `scalars` call in <workdir>/metrics.jsonl (shared by every phase, so a run's
  whole history is one file). Disabled: touches nothing on disk."""

  def __init__(self, workdir: str, phase: str, enabled: bool):
    self.phase = phase
    self.enabled = enabled
    self._writer = None
    self._jsonl = None
    if not enabled:
      return
    from tensorboardX import SummaryWriter  # writes events without TensorFlow
    os.makedirs(workdir, exist_ok=True)
    self._writer = SummaryWriter(os.path.join(workdir, "tb", phase))
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    clash = [k for k in values if k in _RESERVED]
    if clash:
      raise ValueError(f"metric names {clash} clash with the fields {_RESERVED} of metrics.jsonl")
    step = int(step)
    record = {"phase": self.phase, "step": step, "time": time.time()}
    for k, v in values.items():
      record[k] = _json_float(v)
      self._writer.add_scalar(k, float(v), step)
    # Written and flushed line by line: a killed job keeps everything up to its last log.
    self._jsonl.write(json.dumps(record, allow_nan=False) + "\n")
    self._jsonl.flush()

  def images(self, step: int, tag: str, image: np.ndarray) -> None:
    if not self.enabled:
      return
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
      raise ValueError(f"{tag}: expected a uint8 HxWx3 image, got {image.dtype} {image.shape}")
    self._writer.add_image(tag, image, int(step), dataformats="HWC")

  def flush(self) -> None:
    if not self.enabled:
      return
    self._writer.flush()
    self._jsonl.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None
    if self._jsonl is not None:
      self._jsonl.close()
      self._jsonl = None
    self.enabled = False  # later calls are no-ops, not errors on closed files

  def __enter__(self) -> "RunLog":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _version(dist: str) -> str:
  try:
    return importlib.metadata.version(dist)
  except importlib.metadata.PackageNotFoundError:
    return "not installed"


def _write_json(path: str, obj) -> None:
  with open(path, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=2)
    f.write("\n")


def write_run_info(workdir: str, config_json: str, enabled: bool) -> None:
  """config.json, versions.json and devices.json in `workdir`: enough to tell,
  months later, what produced a run's numbers and on which machines."""
  if not enabled:
    return
  import jax
  json.loads(config_json)  # a broken config file would only be found when someone needs it
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
    f.write(config_json)
  versions = {"python": platform.python_version()}
  versions.update({dist: _version(dist) for dist in _PACKAGES})
  _write_json(os.path.join(workdir, "versions.json"), versions)
  devices = [{"id": d.id, "platform": d.platform, "device_kind": d.device_kind,
              "process_index": d.process_index} for d in jax.devices()]
  _write_json(os.path.join(workdir, "devices.json"),
              {"process_count": jax.process_count(), "process_index": jax.process_index(),
               "devices": devices})


def to_uint8(images, xp=np) -> np.ndarray:
  """Model range [-1, 1] -> uint8: round((x + 1) * 127.5) clipped to [0, 255].
  numpy rounds halves to even, so 0 -> round(127.5) = 128 (and -1 -> 0,
  1 -> 255). NaN (a diverged generator) becomes 0 rather than garbage.
  `xp=jax.numpy` does the same inside jit (jnp.round also rounds to even)."""
  x = (xp.asarray(images, xp.float32) + 1.0) * 127.5
  x = xp.nan_to_num(xp.round(x), nan=0.0, posinf=255.0, neginf=0.0)
  return xp.clip(x, 0, 255).astype(xp.uint8)


def _resize(image: np.ndarray, h: int, w: int, resample) -> np.ndarray:
  if image.shape[:2] == (h, w):
    return image
  return np.asarray(Image.fromarray(image).resize((w, h), resample))


def image_grid(rows: Sequence[Sequence[np.ndarray]], pad: int = 2) -> np.ndarray:
  """Tiles uint8 HxWx3 images, one list per grid row, so that the stages of a
  sample (64, 128, 256) sit side by side at one scale. Every cell has the
  largest height and width among the images; smaller ones are upscaled with
  nearest neighbour (blocky, not blurred: the pixels the stage produced).
  `pad` grey (128) pixels separate the cells and frame the grid, so the result
  is R * ch + (R + 1) * pad by C * cw + (C + 1) * pad, C the longest row;
  missing cells of shorter rows stay grey."""
  images = [np.asarray(im) for row in rows for im in row]
  if not images:
    raise ValueError("image_grid needs at least one image")
  for im in images:
    if im.dtype != np.uint8 or im.ndim != 3 or im.shape[-1] != 3:
      raise ValueError(f"expected uint8 HxWx3 images, got {im.dtype} {im.shape}")
  ch = max(im.shape[0] for im in images)
  cw = max(im.shape[1] for im in images)
  n_cols = max(len(row) for row in rows)
  out = np.full((len(rows) * ch + (len(rows) + 1) * pad,
                 n_cols * cw + (n_cols + 1) * pad, 3), 128, np.uint8)
  for r, row in enumerate(rows):
    for c, im in enumerate(row):
      y, x = pad + r * (ch + pad), pad + c * (cw + pad)
      out[y:y + ch, x:x + cw] = _resize(np.asarray(im), ch, cw, Image.NEAREST)
  return out


def heat_colormap(v: np.ndarray) -> np.ndarray:
  """[0, 1] -> RGB in [0, 1], black -> red -> yellow -> white (matplotlib's
  'hot' in three straight pieces), so no matplotlib is needed."""
  v = np.clip(np.asarray(v, np.float32), 0.0, 1.0)[..., None]
  return np.clip(3.0 * v - np.array([0.0, 1.0, 2.0], np.float32), 0.0, 1.0)


def _font():
  return ImageFont.load_default()


def label_band_height() -> int:
  """Height of the white band that holds the words (the font's line plus 2
  pixels above and below)."""
  left, top, right, bottom = _font().getbbox("Ag|")
  return int(math.ceil(bottom)) + 4


def attention_overlay(image: np.ndarray, attention: np.ndarray, words: Sequence[str],
                      cell: int | None = None) -> np.ndarray:
  """AttnGAN-style view of where each word looked: the image, then per word
  the image under its attention map (normalised by its own max, so weak words
  are still readable; bilinear upsampling; 0.4 * image + 0.6 * heat), the word
  written under its panel. Panels are S wide with no gap, S the image side or
  `cell`, so the strip is (1 + T) * S wide and S + label_band_height() high;
  a word wider than its panel is cut at the panel's edge."""
  image = np.asarray(image)
  attention = np.asarray(attention, np.float32)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"expected a uint8 HxWx3 image, got {image.dtype} {image.shape}")
  if attention.ndim != 3 or attention.shape[0] != len(words):
    raise ValueError(f"attention {attention.shape} must be (T, h, w) with T = {len(words)} words")
  if cell is not None:
    image = _resize(image, cell, cell, Image.BILINEAR)
  h, w = image.shape[:2]
  base = image.astype(np.float32)
  panels = [image]
  for a in attention:
    a = np.nan_to_num(np.maximum(a, 0.0))
    a = a / max(float(a.max()), 1e-12)
    up = np.asarray(Image.fromarray(a).resize((w, h), Image.BILINEAR))
    blend = 0.4 * base + 0.6 * 255.0 * heat_colormap(up)
    panels.append(np.clip(np.round(blend), 0, 255).astype(np.uint8))
  band = label_band_height()
  font = _font()
  labels = [np.full((band, w, 3), 255, np.uint8)]  # nothing under the image itself
  for word in words:
    label = Image.new("RGB", (w, band), (255, 255, 255))  # one per word: text clips at the panel
    ImageDraw.Draw(label).text((2, 2), word, fill=(0, 0, 0), font=font)
    labels.append(np.asarray(label))
  return np.concatenate([np.concatenate(panels, 1), np.concatenate(labels, 1)], 0)


class Progress:
  """One tqdm bar per phase, driven by the absolute step (so a resumed run
  starts at `initial` and tqdm's rate and ETA count only this run's steps).
  Disabled on every process but 0: one bar per job, not one per host."""

  def __init__(self, total: int, initial: int, desc: str, enabled: bool):
    from tqdm import tqdm
    self._bar = tqdm(total=total, initial=initial, desc=desc, disable=not enabled,
                     dynamic_ncols=True)

  def update(self, step: int, metrics: Mapping[str, float]) -> None:
    """Metrics with 3 significant digits; tqdm throttles the redraws itself."""
    if self._bar.disable:
      return
    self._bar.set_postfix({k: f"{float(v):.3g}" for k, v in metrics.items()}, refresh=False)
    self._bar.update(int(step) - self._bar.n)

  def close(self) -> None:
    self._bar.close()
