"""The shape-reading diagnosis: STREAM's reading with synonyms pooled, the
scorer's per-object reading, and the command on a trained workdir."""

import numpy as np
import pytest

from mirrorgan_jax.data import shapes, shapes_scorer
from mirrorgan_jax.data.sources import ShapesSource
from mirrorgan_jax.metrics import shape_reading

WORDS = ("<pad>", "a", "circle", "disk", "round", "shape", "square", "box", "triangle", "red")


def _logits(probs_per_position):
  """(N, T, V) log-probabilities from {(row, t): {word: p}}, the rest spread."""
  out = np.full((2, 4, len(WORDS)), 1e-6)
  for (row, t), probs in probs_per_position.items():
    for w, p in probs.items():
      out[row, t, WORDS.index(w)] = p
  return np.log(out / out.sum(-1, keepdims=True))


def test_synonyms_are_pooled_and_only_shape_words_of_the_caption_count():
  ids = np.array([[1, 9, 2, 0], [1, 8, 6, 3]])  # "a red circle", "a triangle square disk"
  lens = np.array([3, 3])  # the second caption's "disk" lies past its length
  logits = _logits({
      (0, 2): {"circle": 0.3, "disk": 0.3, "square": 0.4},  # circle by pooled mass
      (1, 1): {"triangle": 0.2, "round": 0.45, "box": 0.35},  # read circle: wrong
      (1, 2): {"box": 0.5, "square": 0.1, "triangle": 0.4},  # square
      (1, 3): {"triangle": 1.0},  # past the length: not counted
      (0, 1): {"square": 1.0},  # "red" is not a shape word: not counted
  })
  counts = shape_reading.captioner_reading(logits, ids, lens, WORDS)
  assert counts == {("circle", "circle"): 1, ("triangle", "circle"): 1,
                    ("square", "square"): 1}
  assert shape_reading.shape_tokens(WORDS) == {2: "circle", 3: "circle", 4: "circle",
                                               6: "square", 7: "square", 8: "triangle"}


def test_the_scorer_reading_agrees_with_the_alignment_score():
  source = ShapesSource("test", size=64, length=80)
  images = [np.asarray(source.example(i).picture()) for i in range(80)]
  texts = [source.captions(i)[0] for i in range(80)]
  # Two images left blank: their objects are missing.
  images[0] = images[6] = np.zeros_like(images[0])
  counts, fills = shape_reading.scorer_reading(images, texts)
  one = [i for i in range(80) if i % 2 == 0]  # even indices: one object
  expected = sum(shapes_scorer.score_image(images[i], shapes_scorer.parse_caption(texts[i]))
                 ["shape"] for i in one)
  got = sum(v for kind in ("large", "small") for (t, r), v in counts.get(kind, {}).items()
            if t == r)
  assert got == expected and expected <= len(one) - 2
  assert sum(v for kind in ("large", "small") for (_, r), v in counts[kind].items()
             if r is None) == 2
  assert sum(counts["pair"].values()) == 2 * 40
  assert all(0 < f <= 1.01 for fs in fills.values() for f in fs)
  assert set(k for _, k in fills) <= set(shapes.SHAPES)


def test_the_command_refuses_a_missing_workdir(tmp_path, capsys):
  assert shape_reading.main(["--workdir", str(tmp_path / "none")]) == 2
  assert "no such workdir" in capsys.readouterr().err
