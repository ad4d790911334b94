"""Who reads which shape (shapes only): the run's STREAM captioner and the
scorer, on real and generated images, object by object.

    python -m mirrorgan_jax.metrics.shape_reading --workdir W [--captions 1000]

The alignment report says how often a generated shape is right; this says
where it goes wrong, and how often the scorer reads the real images of the
same captions right at the run's last stage size (the ceiling: at 32 px it
reads real small one-object squares right 0.87 of the time). STREAM is
teacher-forced on each caption and, at each word naming a shape, its
probability is summed over that shape's synonyms ("circle", "disk",
"round"): an exact-word accuracy would count "disk" for "circle" as wrong.
Should STREAM misread real images, the generator is taught the wrong shape;
should it read the generated images as the caption says while the scorer
does not, the generator satisfies STREAM without drawing the shape
(docs/shapes_default_job.md).

For squares it also reads the edges at the last stage's own size: how much an
edge's coverage drifts along it (the data's edges: 0), and how many squares
have an edge whose coverage crosses the scorer's cut, the coverage above which
the outer half of an edge pixel stays foreground after its resize to 64 px (at
32 px, 80 over the colour's largest channel: a third for white). Such an edge
leaves part of a half-row in the scorer's view, and its fill ratio counts the
rest as holes; most generated squares that the scorer reads as circles have
one (docs/shapes_default_job.md).
"""

import argparse
import collections
import sys

import jax
import numpy as np

from mirrorgan_jax import evaluate, factory, trained
from mirrorgan_jax.checkpointing import USER_ERRORS
from mirrorgan_jax.config_check import stage_sizes
from mirrorgan_jax.data import image_ops, shapes, shapes_scorer, sources
from mirrorgan_jax.generate import TextToImage
from mirrorgan_jax.sampling import example_keys

SPLITS = ("test", "test_heldout")


def shape_tokens(words) -> dict[int, str]:
  """Vocabulary id -> the shape it names ("round" of "round shape": circle)."""
  out = {}
  for shape, phrases in shapes.SHAPE_WORDS.items():
    for phrase in phrases:
      out[words.index(phrase.split()[0])] = shape
  return out


def captioner_reading(logits, ids, lens, words) -> collections.Counter:
  """(true shape, read shape) counts over the shape words of teacher-forced
  captions: the read shape has the most probability summed over its words.
  logits (N, T, V) predict ids (N, T); positions past lens do not count."""
  tokens = shape_tokens(words)
  names = tuple(shapes.SHAPES)
  prob = np.asarray(jax.nn.softmax(np.asarray(logits, np.float32), axis=-1))
  groups = np.stack([prob[..., [i for i, s in tokens.items() if s == name]].sum(-1)
                     for name in names], -1)  # (N, T, shapes)
  counts = collections.Counter()
  for row, (caption, n) in enumerate(zip(np.asarray(ids), np.asarray(lens))):
    for t in range(int(n)):
      true = tokens.get(int(caption[t]))
      if true is not None:
        counts[(true, names[int(groups[row, t].argmax())])] += 1
  return counts


def named_objects(text: str) -> list[tuple[str, str | None, str | None]]:
  """(kind, colour, shape) of each object a caption names: kind 'large' or
  'small' (None where unnamed) for a one-object scene, 'pair' for either
  object of a two-object scene."""
  attrs = shapes_scorer.parse_caption(text)
  if "objects" in attrs:
    return [("pair", color, shape) for color, shape in attrs["objects"]]
  return [(attrs["size"], attrs["color"], attrs["shape"])]


def scorer_reading(images, texts):
  """The scorer's shape per named object, by kind of object ('large', 'small'
  one-object scenes, 'pair' for either object of a two-object scene):
  {kind: Counter((true, read))} with read None where the colour is missing,
  and {(kind, true): [fill ratio, ...]}."""
  counts = collections.defaultdict(collections.Counter)
  fills = collections.defaultdict(list)
  for image, text in zip(images, texts):
    labels, _ = shapes_scorer.colour_groups(shapes_scorer.to_uint8_64(image))
    for kind, color, shape in named_objects(text):
      m = shapes_scorer.measure(labels, color)
      counts[kind][(shape, m["shape"] if m else None)] += 1
      if m:
        fills[(kind, shape)].append(m["fill"])
  return dict(counts), dict(fills)


# Coverage above which a pixel counts as inside an object: between the data's
# largest edge coverage (3/4: the renderer draws at 4x and box-filters) and 1.
INSIDE = 0.875


def edge_cut(color: str, side: int) -> float | None:
  """The coverage of `color` above which the outer half of an edge pixel is
  foreground for the scorer, at a last stage of `side` px: its bilinear resize
  to 64 px gives that half 3/4 of the pixel and 1/4 of the black beyond (side
  32), a 64 px image is read as it is; None for other sides."""
  weight = {64: 1.0, 32: 0.75}.get(side)
  if weight is None:
    return None
  return shapes_scorer.FOREGROUND / weight / max(shapes.PALETTE[color])


def square_edges(image: np.ndarray, color: str) -> list[np.ndarray] | None:
  """The coverage of `color` along the four edges of its object in a uint8
  image, at the image's own size: the rows and columns just outside the box of
  its inside pixels (top, bottom, left, right). Coverage is each pixel's
  projection on the palette colour, as the scorer's colour groups read
  anti-aliased pixels. None if the colour has no inside pixel or its box
  touches the image's border."""
  labels, _ = shapes_scorer.colour_groups(image)
  rgb = np.asarray(shapes.PALETTE[color], np.float32)
  coverage = image.astype(np.float32) @ rgb / (rgb @ rgb)
  ys, xs = np.nonzero((labels == shapes_scorer.COLOR_NAMES.index(color))
                      & (coverage > INSIDE))
  if not len(ys):
    return None
  y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
  if min(y0, x0) < 1 or y1 > image.shape[0] - 2 or x1 > image.shape[1] - 2:
    return None
  return [coverage[y0 - 1, x0:x1 + 1], coverage[y1 + 1, x0:x1 + 1],
          coverage[y0:y1 + 1, x0 - 1], coverage[y0:y1 + 1, x1 + 1]]


def edge_drift(edge: np.ndarray) -> float:
  """How much an edge's coverage changes from end to end, by the
  least-squares line through it: 0 for the data's straight, axis-parallel
  edges; a tilt of a quarter pixel over the edge gives 0.25."""
  if len(edge) < 2:
    return 0.0
  return float(abs(np.polyfit(np.arange(len(edge)), edge, 1)[0]) * (len(edge) - 1))


def edge_reading(images, texts) -> dict:
  """The edges of every square a caption names: 'drift' (each edge's
  `edge_drift`), and per scorer verdict ('right', 'wrong') the number of
  squares and of those with an edge that crosses `edge_cut` along its length
  ('right_crossing', 'wrong_crossing'): such an edge leaves part of a
  half-row in the scorer's view, holes that its fill ratio counts."""
  out = {"drift": [], "right": 0, "wrong": 0, "right_crossing": 0, "wrong_crossing": 0}
  for image, text in zip(images, texts):
    labels = None
    for _, color, shape in named_objects(text):
      if shape != "square" or color is None:
        continue
      edges = square_edges(np.asarray(image), color)
      if edges is None:
        continue
      if labels is None:
        labels, _ = shapes_scorer.colour_groups(shapes_scorer.to_uint8_64(image))
      m = shapes_scorer.measure(labels, color)
      verdict = "right" if m and m["shape"] == "square" else "wrong"
      cut = edge_cut(color, np.shape(image)[0])
      out["drift"] += [edge_drift(e) for e in edges]
      out[verdict] += 1
      out[f"{verdict}_crossing"] += bool(cut is not None and any(
          e.min() < cut < e.max() for e in edges))
  return out


def _edges_line(reading: dict) -> str:
  drift = np.asarray(reading["drift"] or [np.nan])
  return (f"drift along an edge median {np.median(drift):.3f}, 90th percentile "
          f"{np.percentile(drift, 90):.3f}; with an edge across the scorer's cut: "
          f"{reading['right_crossing']} of the {reading['right']} read right, "
          f"{reading['wrong_crossing']} of the {reading['wrong']} misread")


def _rates(counts: collections.Counter) -> str:
  cells = []
  for true in shapes.SHAPES:
    n = sum(v for (t, _), v in counts.items() if t == true)
    if n:
      cells.append(f"{true} {counts[(true, true)] / n:.2f} (n={n})")
  total = sum(counts.values())
  right = sum(v for (t, r), v in counts.items() if t == r)
  return f"{right / max(total, 1):.3f}: " + ", ".join(cells)


def report(workdir: str, captions: int, seed: int = 0) -> str:
  """The tables, for the EMA generator of `workdir`'s latest GAN checkpoint
  and the STREAM it was trained with."""
  t2i = TextToImage(workdir)  # the sampler, its config and vocabulary
  config, words = t2i.config, t2i.vocab.words
  if config.dataset != "shapes":
    raise ValueError(f"{workdir}: shape reading is for the shapes dataset, "
                     f"not {config.dataset!r}")
  # STREAM's variables: the sampler keeps only the generator's side.
  stream = trained.restore(t2i.path, "gan").state.stream
  caption = jax.jit(factory.create_models(config).captioner.apply)
  size = stage_sizes(config)[-1]
  lines = [f"{workdir}, gan step {t2i.step}, {captions} captions per split "
           f"(the first ones, as the alignment report)"]
  for split in SPLITS:
    source = sources.make_source(config, split, size, stage_sizes(config))
    caps = evaluate.first_captions(source, captions, config.text.words_num)
    real = np.stack([source.example(int(i)).stages[-1] for i in caps.images])
    keys = example_keys(jax.random.key(seed), np.arange(len(caps.ids)))
    fake = np.concatenate(list(t2i.last_stage_images(caps.ids, caps.lens, keys)))
    for what, images in (("real", real), ("generated", fake)):
      logits = caption(stream, image_ops.to_model_range(images), caps.ids)
      lines.append(f"{split}: STREAM reads the shape words of {what} images right "
                   f"{_rates(captioner_reading(logits, caps.ids, caps.lens, words))}")
    # The real images at the last stage's size too: the ceiling for the
    # generated ones (the scorer resizes both to 64 px).
    for what, images in (("real", real), ("generated", fake)):
      counts, fills = scorer_reading(images, caps.texts)
      for kind in ("large", "small", "pair"):
        if kind in counts:
          fill = ", ".join(f"{s} {np.median(fills[(kind, s)]):.2f}" for s in shapes.SHAPES
                           if fills.get((kind, s)))
          lines.append(f"{split}: the scorer reads {what} {kind} objects right "
                       f"{_rates(counts[kind])}; median fill {fill}")
      lines.append(f"{split}: edges of {what} squares: "
                   f"{_edges_line(edge_reading(images, caps.texts))}")
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m mirrorgan_jax.metrics.shape_reading",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="a shapes workdir with a gan phase")
  parser.add_argument("--captions", type=int, default=evaluate.ALIGNMENT_CAPTIONS,
                      help="captions per split (default: %(default)s)")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  try:
    print(report(args.workdir, args.captions, args.seed))
  except USER_ERRORS as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
