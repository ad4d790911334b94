"""The analytic alignment scorer for `shapes`: does an image show what its
caption says? No learned judge: colours, positions, sizes, shapes and relations
are read off the pixels (contract: ../shared/specs/shapes.md)."""

import re

import numpy as np
from PIL import Image

from mirrorgan_jax.data.shapes import ANCHORS, PALETTE, SHAPE_WORDS

COLOR_NAMES = tuple(PALETTE)
_PALETTE = np.array([PALETTE[c] for c in COLOR_NAMES], np.float32)
_SHAPE_OF_WORD = {w: s for s, words in SHAPE_WORDS.items() for w in words}
_POSITION_OF_WORD = {"left": "left", "right": "right", "top": "top", "bottom": "bottom",
                     "center": "center", "middle": "center"}
_SIZE_OF_WORD = {"large": "large", "big": "large", "small": "small", "little": "small",
                 "tiny": "small"}
_RELATIONS = ("left", "right", "above", "below")
ATTRIBUTES = ("color", "position", "size", "shape", "relation")

FOREGROUND = 60  # a pixel is foreground when its largest channel is above this
LARGE_WIDTH = 0.36  # bbox width (fraction of the side) above which an object is large
MIN_PIXELS = 4  # fewer pixels of a colour than this: the object is absent
# Shape from where the mass sits (a triangle, apex up, has it low), then the
# fill ratio of the 2-98 percentile bbox (square near 1, circle near 0.785).
TRIANGLE_OFFSET = 0.06  # rendered: triangles >= 0.108, others <= 0.026
SQUARE_FILL = 0.97  # rendered: squares >= 0.984, circles <= 0.956


def parse_caption(text: str) -> dict:
  """Attributes named by a caption. One object: {'color', 'shape', 'size',
  'position'} (None where not named). Two objects: {'objects': ((color, shape),
  (color, shape)), 'relation': 'left' | 'above'}, objects[0] being the left or
  upper one."""
  tokens = re.findall(r"\w+", text.lower())
  colors, shapes, sizes, positions, relation = [], [], [], [], None
  for i, tok in enumerate(tokens):
    if tok in PALETTE:
      colors.append(tok)
    elif tok == "round" and i + 1 < len(tokens) and tokens[i + 1] == "shape":
      shapes.append("circle")
    elif tok in _SHAPE_OF_WORD and not (tok == "shape" and i and tokens[i - 1] == "round"):
      shapes.append(_SHAPE_OF_WORD[tok])
    elif tok in _SIZE_OF_WORD:
      sizes.append(_SIZE_OF_WORD[tok])
    if tok in _POSITION_OF_WORD:
      positions.append(_POSITION_OF_WORD[tok])
    if tok in _RELATIONS and relation is None:
      relation = tok
  if len(colors) >= 2:
    a = (colors[0], shapes[0] if shapes else None)
    b = (colors[1], shapes[1] if len(shapes) > 1 else None)
    if relation in ("right", "below"):
      a, b = b, a
    return {"objects": (a, b),
            "relation": {"right": "left", "below": "above"}.get(relation, relation)}
  first = lambda xs: xs[0] if xs else None  # noqa: E731
  return {"color": first(colors), "shape": first(shapes), "size": first(sizes),
          "position": first(positions)}


def to_uint8_64(image) -> np.ndarray:
  """(H, W, 3) uint8, or float in [-1, 1], -> uint8 64x64 (PIL bilinear)."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    image = np.clip(np.rint((image + 1.0) * 127.5), 0, 255).astype(np.uint8)
  if image.shape[:2] != (64, 64):
    image = np.asarray(Image.fromarray(image).resize((64, 64), Image.BILINEAR))
  return image


def colour_groups(image: np.ndarray):
  """(labels (H, W): palette index per pixel, -1 for background; pixel count
  per palette colour) of a uint8 image."""
  px = image.reshape(-1, 3).astype(np.float32)
  fg = px.max(axis=1) > FOREGROUND
  label = np.full(len(px), -1)
  # Nearest palette colour up to brightness: anti-aliased edges are the colour
  # blended with the black background, alpha * colour, so each pixel is compared
  # with its best-scaled version of every palette colour.
  p = px[fg]
  alpha = np.clip(p @ _PALETTE.T / (_PALETTE**2).sum(-1), 0.0, None)
  d = ((p[:, None, :] - alpha[..., None] * _PALETTE[None]) ** 2).sum(-1)
  label[fg] = d.argmin(-1)
  counts = np.bincount(label[fg], minlength=len(COLOR_NAMES))
  return label.reshape(image.shape[:2]), counts


def measure(labels: np.ndarray, color: str) -> dict | None:
  """Centroid, anchor, size and shape of the pixels of one palette colour."""
  ys, xs = np.nonzero(labels == COLOR_NAMES.index(color))
  if len(xs) < MIN_PIXELS:
    return None
  side = labels.shape[0]
  cx, cy = (xs.mean() + 0.5) / side, (ys.mean() + 0.5) / side
  x0, x1 = np.percentile(xs, [2, 98])
  y0, y1 = np.percentile(ys, [2, 98])
  w, h = (x1 - x0 + 1) / side, (y1 - y0 + 1) / side
  fill = len(xs) / ((x1 - x0 + 1) * (y1 - y0 + 1))
  offset = (cy - ((y0 + y1) / 2 + 0.5) / side) / max(h, 1e-6)
  if offset > TRIANGLE_OFFSET:
    shape = "triangle"
  elif fill > SQUARE_FILL:
    shape = "square"
  else:
    shape = "circle"
  position = min(ANCHORS, key=lambda a: (ANCHORS[a][0] - cx) ** 2 + (ANCHORS[a][1] - cy) ** 2)
  return {"center": (cx, cy), "position": position, "shape": shape,
          "size": "large" if w > LARGE_WIDTH else "small", "fill": fill, "offset": offset}


def score_image(image, attributes: dict) -> dict:
  """{attribute: bool} for the attributes the caption names."""
  labels, counts = colour_groups(to_uint8_64(image))
  if "objects" in attributes:
    top2 = {COLOR_NAMES[i] for i in np.argsort(-counts)[:2] if counts[i] >= MIN_PIXELS}
    (ca, sa), (cb, sb) = attributes["objects"]
    ma, mb = measure(labels, ca), measure(labels, cb)
    out = {"color": ca in top2 and cb in top2,
           "shape": bool(ma and mb and ma["shape"] == sa and mb["shape"] == sb)}
    if attributes["relation"]:
      axis = 0 if attributes["relation"] == "left" else 1
      out["relation"] = bool(ma and mb and ma["center"][axis] < mb["center"][axis])
    return out
  out = {"color": bool(counts.max() >= MIN_PIXELS)
         and COLOR_NAMES[int(counts.argmax())] == attributes["color"]}
  m = measure(labels, attributes["color"]) if attributes["color"] else None
  for attr in ("position", "size", "shape"):
    if attributes.get(attr) is not None:
      out[attr] = bool(m and m[attr] == attributes[attr])
  return out


def score(images, captions) -> dict:
  """Accuracy per attribute and of 'all' (every named attribute right) over
  pairs of images and captions; attributes a caption does not name are not
  counted. Also 'n', the number of pairs."""
  hits = {a: [] for a in ATTRIBUTES + ("all",)}
  for image, caption in zip(images, captions):
    result = score_image(image, parse_caption(caption))
    for a, ok in result.items():
      hits[a].append(ok)
    hits["all"].append(all(result.values()))
  out = {a: float(np.mean(v)) for a, v in hits.items() if v}
  out["n"] = len(hits["all"])
  return out
