"""The embedded `shapes` dataset: captioned scenes of coloured shapes on black.

Every example is a pure function of (split, index, seed): the same triple gives
the same image, attributes and captions on every machine, in any order of
access. The contract is ../shared/specs/shapes.md; where it is silent:

- `test` follows the training distribution (held-out compositions excluded);
  `test_heldout` holds one-object scenes of a held-out (colour, shape) pair and
  two-object scenes in which one of the two objects is such a pair.
- Even indices are one-object scenes, odd indices two-object scenes, so half of
  each split is of each kind.
- Two-object scenes are scored on colour, shape and relation; their captions
  name no size or position (both objects are small, at opposite anchors).
"""

import dataclasses
import itertools
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

PALETTE = {
    "red": (230, 25, 25),
    "green": (30, 190, 40),
    "blue": (30, 70, 230),
    "yellow": (240, 220, 30),
    "purple": (160, 40, 210),
    "white": (240, 240, 240),
}
COLORS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle")
SIZES = ("large", "small")
SIZE_EXTENT = {"large": 0.50, "small": 0.25}
ANCHORS = {
    "left": (0.27, 0.50),
    "right": (0.73, 0.50),
    "top": (0.50, 0.27),
    "bottom": (0.50, 0.73),
    "center": (0.50, 0.50),
}
POSITIONS = tuple(ANCHORS)
DEFAULT_HELDOUT = (("green", "triangle"), ("purple", "circle"), ("yellow", "square"))
SPLITS = ("train", "test", "test_heldout")
CAPTIONS_PER_IMAGE = 5
SUPERSAMPLE = 4

SIZE_WORDS = {"large": ("large", "big"), "small": ("small", "little", "tiny")}
SHAPE_WORDS = {"circle": ("circle", "disk", "round shape"), "square": ("square", "box"),
               "triangle": ("triangle",)}
POSITION_WORDS = {"left": ("left",), "right": ("right",), "top": ("top",),
                  "bottom": ("bottom",), "center": ("center", "middle")}

ONE_OBJECT_TEMPLATES = (
    "a {size} {color} {shape} on the {pos}",
    "there is a {size} {color} {shape} at the {pos} of the image",
    "a {color} {shape} that is {size} , in the {pos} part of the picture",
    "the {pos} of the picture shows a {size} {color} {shape}",
    "a {size} {shape} colored {color} sits at the {pos}",
    "one {color} {shape} , {size} , placed at the {pos}",
)
# {a} is the object the relation starts from, {b} the other; relation words
# are from {a}'s point of view.
TWO_OBJECT_TEMPLATES = {
    "left": ("a {ca} {sa} to the left of a {cb} {sb}",
             "there is a {ca} {sa} on the left of a {cb} {sb}"),
    "right": ("a {ca} {sa} to the right of a {cb} {sb}",
              "there is a {ca} {sa} on the right of a {cb} {sb}"),
    "above": ("a {ca} {sa} above a {cb} {sb}",
              "a {ca} {sa} is placed above a {cb} {sb}"),
    "below": ("a {ca} {sa} below a {cb} {sb}",
              "a {ca} {sa} is placed below a {cb} {sb}"),
}
INVERSE = {"left": "right", "right": "left", "above": "below", "below": "above"}

# Paraphrases: phrasings no split's captions use (other word orders, "the" for
# "a", terse lists, words outside the vocabulary, which are dropped when
# encoded), for measuring whether a model reads captions it was not trained on
# (`paraphrases`; the alignment report's `*_paraphrased` rows). As the
# templates above, two-object ones name first the object the relation starts
# from, so the scorer's parser reads them.
PARAPHRASE_ONE_OBJECT_TEMPLATES = (
    "{color} {shape} , {size} , {pos}",
    "in the {pos} there is a {size} {color} {shape}",
    "a {shape} , {color} and {size} , at the {pos}",
    "the image shows one {size} {shape} colored {color} on the {pos}",
    "at the {pos} : a {color} {shape} that is {size}",
    "{size} {color} {shape} located in the {pos}",
)
PARAPHRASE_TWO_OBJECT_TEMPLATES = {
    "left": ("the {ca} {sa} is to the left of the {cb} {sb}", "{ca} {sa} left of {cb} {sb}"),
    "right": ("the {ca} {sa} is to the right of the {cb} {sb}", "{ca} {sa} right of {cb} {sb}"),
    "above": ("the {ca} {sa} sits above the {cb} {sb}", "{ca} {sa} above {cb} {sb}"),
    "below": ("the {ca} {sa} sits below the {cb} {sb}", "{ca} {sa} below {cb} {sb}"),
}


@dataclasses.dataclass(frozen=True)
class ShapeObject:
  color: str
  shape: str
  size: str
  position: str
  center: tuple[float, float]  # jittered, fractions of the canvas
  extent: float  # fraction of the canvas


@dataclasses.dataclass(frozen=True)
class Scene:
  """objects[0] is left of (relation 'left') or above ('above') objects[1]."""
  objects: tuple[ShapeObject, ...]
  relation: str | None  # None, 'left' or 'above'


@dataclasses.dataclass(frozen=True)
class Example:
  image: np.ndarray  # uint8 (S, S, 3)
  captions: tuple[str, ...]
  scene: Scene


def _rng(split: str, index: int, seed: int) -> np.random.Generator:
  if split not in SPLITS:
    raise ValueError(f"unknown shapes split {split!r}: use one of {SPLITS}")
  if index < 0:
    raise ValueError(f"shapes index must be >= 0, got {index}")
  return np.random.default_rng([SPLITS.index(split), index, seed])


def _make_object(rng, color, shape, size, position) -> ShapeObject:
  ax, ay = ANCHORS[position]
  jitter = rng.uniform(-0.04, 0.04, 2)
  extent = SIZE_EXTENT[size] * rng.uniform(0.9, 1.1)
  return ShapeObject(color, shape, size, position, (ax + jitter[0], ay + jitter[1]), extent)


def sample_scene(split: str, index: int, seed: int = 0,
                 heldout: Sequence[tuple[str, str]] = DEFAULT_HELDOUT) -> Scene:
  rng = _rng(split, index, seed)
  heldout = {tuple(p) for p in heldout}
  pairs = [(c, s) for c in COLORS for s in SHAPES]
  allowed = [p for p in pairs if p not in heldout]
  first_pool = sorted(heldout) if split == "test_heldout" else allowed
  if not first_pool:
    raise ValueError("the held-out list leaves no (colour, shape) pair for this split")
  color, shape = first_pool[rng.integers(len(first_pool))]
  if index % 2 == 0:
    size, position = SIZES[rng.integers(2)], POSITIONS[rng.integers(len(POSITIONS))]
    return Scene((_make_object(rng, color, shape, size, position),), None)
  others = [p for p in allowed if p[0] != color]
  color_b, shape_b = others[rng.integers(len(others))]
  relation = ("left", "above")[rng.integers(2)]
  anchors = ("left", "right") if relation == "left" else ("top", "bottom")
  a = (color, shape)
  b = (color_b, shape_b)
  if rng.integers(2):  # the named-first object is not always the left/top one
    a, b = b, a
  return Scene((_make_object(rng, *a, "small", anchors[0]),
                _make_object(rng, *b, "small", anchors[1])), relation)


def render(scene: Scene, size: int = 64) -> np.ndarray:
  """Anti-aliased rendering: draw at 4x, box-filter down to `size`."""
  big = size * SUPERSAMPLE
  canvas = Image.new("RGB", (big, big), (0, 0, 0))
  draw = ImageDraw.Draw(canvas)
  for obj in scene.objects:
    cx, cy = obj.center[0] * big, obj.center[1] * big
    h = obj.extent * big / 2
    box = (cx - h, cy - h, cx + h, cy + h)
    color = PALETTE[obj.color]
    if obj.shape == "circle":
      draw.ellipse(box, fill=color)
    elif obj.shape == "square":
      draw.rectangle(box, fill=color)
    else:
      draw.polygon([(cx, cy - h), (cx + h, cy + h), (cx - h, cy + h)], fill=color)
  return np.asarray(canvas.resize((size, size), Image.BOX))


def near_miss(scene: Scene, rng: np.random.Generator,
              heldout: Sequence[tuple[str, str]] = DEFAULT_HELDOUT) -> Scene | None:
  """The scene with one thing its captions name changed, for hard negatives:
  two objects get each other's colours (so the named order flips), one object
  gets another shape. None when every such change makes a held-out pair."""
  heldout = {tuple(p) for p in heldout}
  if scene.relation is not None:
    a, b = scene.objects
    objects = (dataclasses.replace(a, color=b.color), dataclasses.replace(b, color=a.color))
    if any((o.color, o.shape) in heldout for o in objects):
      return None
    return Scene(objects, scene.relation)
  (o,) = scene.objects
  shapes = [s for s in SHAPES if s != o.shape and (o.color, s) not in heldout]
  if not shapes:
    return None
  return Scene((dataclasses.replace(o, shape=shapes[rng.integers(len(shapes))]),), None)


def recolour(scene: Scene, rng: np.random.Generator,
             heldout: Sequence[tuple[str, str]] = DEFAULT_HELDOUT) -> Scene | None:
  """The scene with other colours and nothing else changed (shape, size, place
  and outline to the sub-pixel), for colour twins: each object a colour drawn
  from those that keep its (colour, shape) pair out of `heldout`, the two
  objects of a pair still apart in colour, not all as before. None when no
  such colouring exists."""
  heldout = {tuple(p) for p in heldout}
  objs = scene.objects
  choices = [[c for c in COLORS if (c, o.shape) not in heldout] for o in objs]
  old = tuple(o.color for o in objs)
  options = [cs for cs in itertools.product(*choices)
             if cs != old and len(set(cs)) == len(cs)]
  if not options:
    return None
  colours = options[rng.integers(len(options))]
  return Scene(tuple(dataclasses.replace(o, color=c) for o, c in zip(objs, colours)),
               scene.relation)


def _pick(rng, words):
  return words[rng.integers(len(words))]


def captions_for(scene: Scene, rng: np.random.Generator, n: int = CAPTIONS_PER_IMAGE,
                 one_object=ONE_OBJECT_TEMPLATES, two_object=TWO_OBJECT_TEMPLATES
                 ) -> tuple[str, ...]:
  out = []
  if scene.relation is None:
    (obj,) = scene.objects
    for k in rng.permutation(len(one_object))[:n]:
      out.append(one_object[k].format(
          size=_pick(rng, SIZE_WORDS[obj.size]), color=obj.color,
          shape=_pick(rng, SHAPE_WORDS[obj.shape]),
          pos=_pick(rng, POSITION_WORDS[obj.position])))
    return tuple(out)
  first, second = scene.objects
  for _ in range(n):
    # From the first object's view (left/above) or the second's (right/below).
    if rng.integers(2):
      rel, a, b = scene.relation, first, second
    else:
      rel, a, b = INVERSE[scene.relation], second, first
    template = _pick(rng, two_object[rel])
    out.append(template.format(ca=a.color, sa=_pick(rng, SHAPE_WORDS[a.shape]),
                               cb=b.color, sb=_pick(rng, SHAPE_WORDS[b.shape])))
  return tuple(out)


def example(split: str, index: int, seed: int = 0, size: int = 64,
            heldout: Sequence[tuple[str, str]] = DEFAULT_HELDOUT) -> Example:
  """The example `index` of `split`: a pure function of its arguments."""
  scene = sample_scene(split, index, seed, heldout)
  return Example(render(scene, size), _captions(scene, split, index, seed), scene)


def _captions(scene: Scene, split: str, index: int, seed: int) -> tuple[str, ...]:
  return captions_for(scene, np.random.default_rng([SPLITS.index(split), index, seed, 1]))


def captions(split: str, index: int, seed: int = 0,
             heldout: Sequence[tuple[str, str]] = DEFAULT_HELDOUT) -> tuple[str, ...]:
  """The captions of example `index` without rendering it."""
  return _captions(sample_scene(split, index, seed, heldout), split, index, seed)


def paraphrases(split: str, index: int, seed: int = 0,
                heldout: Sequence[tuple[str, str]] = DEFAULT_HELDOUT) -> tuple[str, ...]:
  """Captions of example `index` in the paraphrase templates, as many as its
  own: the same scene said in ways its captions never are."""
  return captions_for(sample_scene(split, index, seed, heldout),
                      np.random.default_rng([SPLITS.index(split), index, seed, 2]),
                      one_object=PARAPHRASE_ONE_OBJECT_TEMPLATES,
                      two_object=PARAPHRASE_TWO_OBJECT_TEMPLATES)


def caption_words() -> tuple[str, ...]:
  """Every word a shapes caption can contain, sorted: the dataset's vocabulary
  (after the padding word), the same for every split, seed and canvas size."""
  texts = [*ONE_OBJECT_TEMPLATES, *(t for ts in TWO_OBJECT_TEMPLATES.values() for t in ts),
           *COLORS]
  for table in (SIZE_WORDS, SHAPE_WORDS, POSITION_WORDS):
    texts += [w for words in table.values() for w in words]
  words = set()
  for t in texts:
    for part in t.replace("{", " {").replace("}", "} ").split():
      if not part.startswith("{") and part.isalnum():
        words.add(part)
  return tuple(sorted(words))


def composition_id(scene: Scene) -> int:
  """An integer naming what the captions can say about a scene: colour, shape,
  size and position of one object (0..179), or colours, shapes and relation of
  two (180..827). Scenes with equal ids fit each other's captions."""
  if scene.relation is None:
    (o,) = scene.objects
    return (((COLORS.index(o.color) * len(SHAPES) + SHAPES.index(o.shape)) * len(SIZES)
             + SIZES.index(o.size)) * len(POSITIONS) + POSITIONS.index(o.position))
  a, b = scene.objects
  pair = ((COLORS.index(a.color) * len(SHAPES) + SHAPES.index(a.shape)) * len(COLORS)
          + COLORS.index(b.color)) * len(SHAPES) + SHAPES.index(b.shape)
  one = len(COLORS) * len(SHAPES) * len(SIZES) * len(POSITIONS)
  return one + pair * 2 + ("left", "above").index(scene.relation)
