"""The shape-reading diagnosis: STREAM's reading with synonyms pooled, the
scorer's per-object reading, and the command on a trained workdir."""

import numpy as np
import pytest

from mirrorgan_jax.checkpointing import CheckpointError
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


def test_the_command_reports_a_checkpoint_it_cannot_restore(monkeypatch, capsys):
  # e.g. a workdir trained with another model config: one line, no traceback
  def refuse(*_):
    raise CheckpointError("no checkpoint could be restored:\n  W/checkpoints/gan/4000: "
                          "written with another model config")
  monkeypatch.setattr(shape_reading, "report", refuse)
  assert shape_reading.main(["--workdir", "W"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: no checkpoint could be restored") and "Traceback" not in err


def _white_square(top_edge, side=32, other_edges=120):
  """A uint8 image: a white square inside rows and columns 10-17, its top edge
  (row 9) holding `top_edge` (8 values of the largest channel), its other
  edges `other_edges`, on black."""
  image = np.zeros((side, side, 3), np.uint8)
  image[10:18, 10:18] = 240
  image[18, 10:18] = image[10:18, 9] = image[10:18, 18] = other_edges
  image[9, 10:18] = np.asarray(top_edge)[:, None]
  return image


@pytest.mark.parametrize("color", ["white", "green"])
def test_edge_cut_is_where_the_scorers_resize_keeps_an_edges_outer_half(color):
  rgb = np.asarray(shapes.PALETTE[color], np.float32)
  cut = shape_reading.edge_cut(color, 32)
  for coverage, kept in ((cut - 0.01, False), (cut + 0.01, True)):
    image = np.zeros((32, 32, 3), np.uint8)
    image[10:18, 10:18] = rgb.astype(np.uint8)
    image[9, 10:18] = np.rint(coverage * rgb).astype(np.uint8)
    big = shapes_scorer.to_uint8_64(image)
    # Row 18 of the 64 px image is the outer half of row 9; columns 24-31 lie
    # inside the square's 20-35, away from its corners.
    assert (big[18, 24:32].max(-1) > shapes_scorer.FOREGROUND).all() == kept
    assert (big[19, 24:32].max(-1) > shapes_scorer.FOREGROUND).all()  # the inner half
  assert shape_reading.edge_cut(color, 64) == pytest.approx(
      shapes_scorer.FOREGROUND / rgb.max())
  assert shape_reading.edge_cut(color, 16) is None


def test_a_tilted_edge_drifts_by_its_tilt_and_crosses_the_cut():
  ramp = np.rint(240 * np.linspace(0.2, 0.45, 8))  # a quarter pixel over the edge
  edges = shape_reading.square_edges(_white_square(ramp), "white")
  assert len(edges) == 4 and all(len(e) == 8 for e in edges)
  np.testing.assert_allclose(edges[0], ramp / 240, atol=1e-6)
  assert shape_reading.edge_drift(edges[0]) == pytest.approx(0.25, abs=0.005)
  assert [shape_reading.edge_drift(e) for e in edges[1:]] == pytest.approx([0, 0, 0],
                                                                          abs=1e-9)
  caption = ["a small white square on the left"]
  tilted = shape_reading.edge_reading([_white_square(ramp)], caption)
  level = shape_reading.edge_reading([_white_square(np.full(8, 48))], caption)  # 0.2
  assert tilted["right"] + tilted["wrong"] == 1
  assert tilted["right_crossing"] + tilted["wrong_crossing"] == 1
  assert level["right_crossing"] + level["wrong_crossing"] == 0
  # No inside pixel of the colour, or a box at the image's border: no edges.
  assert shape_reading.square_edges(_white_square(ramp), "red") is None
  assert shape_reading.square_edges(np.roll(_white_square(ramp), -10, axis=0), "white") is None


def test_the_datas_squares_have_straight_edges_that_never_cross_the_cut():
  source = ShapesSource("test", size=32, length=120)
  images = [np.asarray(source.example(i).stages[-1]) for i in range(120)]
  texts = [source.captions(i)[0] for i in range(120)]
  reading = shape_reading.edge_reading(images, texts)
  squares = sum(shape == "square" for t in texts
                for _, _, shape in shape_reading.named_objects(t))
  assert 20 <= reading["right"] + reading["wrong"] <= squares
  assert len(reading["drift"]) == 4 * (reading["right"] + reading["wrong"])
  assert max(reading["drift"]) < 1e-6
  assert reading["right_crossing"] == reading["wrong_crossing"] == 0
