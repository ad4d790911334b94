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

  def images(self, step: int, tag: str, image: np.ndarray, png: str | None = None) -> None:
    """`image` to TensorBoard under `tag` and, with `png`, to that file too:
    one array for both, so the PNG shows what TensorBoard shows."""
    if not self.enabled:
      return
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
      raise ValueError(f"{tag}: expected a uint8 HxWx3 image, got {image.dtype} {image.shape}")
    self._writer.add_image(tag, image, int(step), dataformats="HWC")
    if png is not None:
      os.makedirs(os.path.dirname(png) or ".", exist_ok=True)
      Image.fromarray(image).save(png)

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


RUN_INFO_FILES = ("config.json", "versions.json", "devices.json")


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


# Pictures for people (sample grids, attention maps) show every image at least
# this many pixels a side, scaled by an integer nearest-neighbour factor: the
# 16 and 32 px stages of the shapes default are unreadable at 1:1. Images that
# large already stay 1:1. Images written as data (generate's 000000.png, what
# evaluation reads) are never scaled.
VIEW_MIN_SIDE = 128
# Width of the white strip right of a row that holds its caption.
CAPTION_WIDTH = 256
_MARGIN = 4  # pixels between a caption strip's edge and its text


def view_factor(side: int, min_side: int = VIEW_MIN_SIDE) -> int:
  """The smallest integer factor that brings `side` to at least `min_side`
  (1 for sides already that large, or min_side <= 0)."""
  return max(1, -(-int(min_side) // max(int(side), 1)))


def _nearest(image: np.ndarray, h: int, w: int) -> np.ndarray:
  """Nearest-neighbour resize: exact np.repeat blocks when (h, w) are
  multiples of the image's size, PIL's nearest otherwise."""
  ih, iw = image.shape[:2]
  if (ih, iw) == (h, w):
    return image
  if h % ih == 0 and w % iw == 0:
    return np.repeat(np.repeat(image, h // ih, 0), w // iw, 1)
  return np.asarray(Image.fromarray(image).resize((w, h), Image.NEAREST))


def _check_image(im: np.ndarray) -> None:
  if im.dtype != np.uint8 or im.ndim != 3 or im.shape[-1] != 3:
    raise ValueError(f"expected uint8 HxWx3 images, got {im.dtype} {im.shape}")


def _font():
  """PIL's default font (no font file needed)."""
  return ImageFont.load_default()


def _line_height(font) -> int:
  left, top, right, bottom = font.getbbox("Ag|")
  return int(math.ceil(bottom)) + 2


def label_band_height() -> int:
  """Height of the white band that holds the words (the font's line plus 2
  pixels above and below)."""
  left, top, right, bottom = _font().getbbox("Ag|")
  return int(math.ceil(bottom)) + 4


def wrap_caption(text: str, width: int, max_lines: int, font=None) -> list[str]:
  """`text` in lines at most `width` pixels wide in `font` (default: PIL's
  default font), broken between words; a word wider than a line is split
  across lines. Past `max_lines` (at least one is kept) the text is cut and
  the last line kept ends in "..."."""
  font = font or _font()
  fits = lambda s: font.getlength(s) <= width  # noqa: E731
  lines, line = [], ""
  for word in text.split():
    if fits(f"{line} {word}" if line else word):
      line = f"{line} {word}" if line else word
      continue
    if line:
      lines.append(line)
    while not fits(word) and len(word) > 1:
      n = len(word) - 1
      while n > 1 and not fits(word[:n]):
        n -= 1
      lines.append(word[:n])
      word = word[n:]
    line = word
  if line:
    lines.append(line)
  max_lines = max(1, int(max_lines))
  if len(lines) > max_lines:
    lines = lines[:max_lines]
    last = lines[-1]
    while last and not fits(last + "..."):
      last = last[:-1]
    lines[-1] = last.rstrip() + "..."
  return lines


def caption_strip(text: str | None, height: int, width: int = CAPTION_WIDTH) -> np.ndarray:
  """uint8 (height, width, 3): white, with `text` wrapped in black (as many
  lines as fit, the block centred vertically; see `wrap_caption`). All white
  for an empty or None caption."""
  strip = Image.new("RGB", (int(width), int(height)), (255, 255, 255))
  if text and text.strip():
    font = _font()
    step = _line_height(font)
    lines = wrap_caption(text, width - 2 * _MARGIN, (height - 2 * _MARGIN) // step, font)
    y = max(0, (height - len(lines) * step) // 2)
    draw = ImageDraw.Draw(strip)
    for line in lines:
      draw.text((_MARGIN, y), line, fill=(0, 0, 0), font=font)
      y += step
  return np.asarray(strip)


def image_grid(rows: Sequence[Sequence[np.ndarray]], captions: Sequence[str | None] | None = None,
               pad: int = 2, min_side: int = VIEW_MIN_SIDE,
               caption_width: int = CAPTION_WIDTH) -> np.ndarray:
  """Tiles uint8 HxWx3 images for viewing, one list per grid row (e.g. the
  stages of a sample, 16 and 32 px or 64, 128 and 256, side by side at one
  scale), with each row's caption beside it.

  Every cell has the largest height and width among the images, times
  view_factor(the smaller of the two, min_side): at least `min_side` pixels,
  an integer factor, 1:1 when the images are that large already. Images are
  scaled to the cell with nearest neighbour (blocky, not blurred: the pixels
  the stage produced; each pixel an exact block where the sizes divide).
  `pad` grey (128) pixels separate the cells and frame the grid; missing
  cells of shorter rows stay grey. With `captions` (one per row; "" or None
  for none), a white strip `caption_width` wide right of each row holds its
  caption (`caption_strip`). The result is R * ch + (R + 1) * pad high and
  C * cw + (C + 1) * pad wide, C the longest row, plus caption_width + pad
  with captions."""
  images = [np.asarray(im) for row in rows for im in row]
  if not images:
    raise ValueError("image_grid needs at least one image")
  for im in images:
    _check_image(im)
  if captions is not None and len(captions) != len(rows):
    raise ValueError(f"{len(captions)} captions for {len(rows)} rows")
  ch = max(im.shape[0] for im in images)
  cw = max(im.shape[1] for im in images)
  f = view_factor(min(ch, cw), min_side)
  ch, cw = ch * f, cw * f
  n_cols = max(len(row) for row in rows)
  width = n_cols * cw + (n_cols + 1) * pad
  text_x = width
  if captions is not None:
    width += caption_width + pad
  out = np.full((len(rows) * ch + (len(rows) + 1) * pad, width, 3), 128, np.uint8)
  for r, row in enumerate(rows):
    y = pad + r * (ch + pad)
    for c, im in enumerate(row):
      x = pad + c * (cw + pad)
      out[y:y + ch, x:x + cw] = _nearest(np.asarray(im), ch, cw)
    if captions is not None:
      out[y:y + ch, text_x:text_x + caption_width] = caption_strip(captions[r], ch, caption_width)
  return out


def heat_colormap(v: np.ndarray) -> np.ndarray:
  """[0, 1] -> RGB in [0, 1], black -> red -> yellow -> white (matplotlib's
  'hot' in three straight pieces), so no matplotlib is needed."""
  v = np.clip(np.asarray(v, np.float32), 0.0, 1.0)[..., None]
  return np.clip(3.0 * v - np.array([0.0, 1.0, 2.0], np.float32), 0.0, 1.0)


def attention_overlay(image: np.ndarray, attention: np.ndarray, words: Sequence[str],
                      caption: str | None = None, *, min_side: int = VIEW_MIN_SIDE,
                      cell: int | None = None, caption_width: int = CAPTION_WIDTH) -> np.ndarray:
  """AttnGAN-style view of where each word looked: the image, then per word
  the image under its attention map (normalised by its own max, so weak words
  are still readable; bilinear upsampling; 0.4 * image + 0.6 * heat), the word
  written under its panel, and with `caption` the caption in a white strip
  `caption_width` wide right of it all (as `image_grid` writes it).

  The image is scaled by view_factor(its side, min_side) with nearest
  neighbour (`cell`, when given, is one more lower bound on the side: the
  larger applies), so panels are S = side * factor wide with no gap, the
  strip (1 + T) * S (+ caption_width) wide and S + label_band_height() high;
  a word wider than its panel is cut at the panel's edge."""
  image = np.asarray(image)
  attention = np.asarray(attention, np.float32)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"expected a uint8 HxWx3 image, got {image.dtype} {image.shape}")
  if attention.ndim != 3 or attention.shape[0] != len(words):
    raise ValueError(f"attention {attention.shape} must be (T, h, w) with T = {len(words)} words")
  f = view_factor(min(image.shape[:2]), max(min_side, cell or 0))
  image = _nearest(image, image.shape[0] * f, image.shape[1] * f)
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
  out = np.concatenate([np.concatenate(panels, 1), np.concatenate(labels, 1)], 0)
  if caption is not None:
    out = np.concatenate([out, caption_strip(caption, out.shape[0], caption_width)], 1)
  return out


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
