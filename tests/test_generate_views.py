"""What `generate` writes, from made-up samples (no model, no training): the
samples at the model's resolution, the views for people enlarged with the
caption beside them, drawn by the same functions as the training samples."""

import os

import numpy as np
from PIL import Image

from mirrorgan_jax import summaries
from mirrorgan_jax.generate import Samples, write_samples

TEXTS = ["a big red circle on the left", "a small blue box"]
WORDS = [["a", "big", "red", "circle"], ["a", "small", "blue", "box"]]


def _samples(k=1):
  """Two stages (16 and 32 px) and the attention of the refined one, as
  `TextToImage.generate` returns them for two captions."""
  rng = np.random.default_rng(0)
  images = [rng.integers(0, 256, (2, k, s, s, 3), np.uint8) for s in (16, 32)]
  attention = [rng.random((2, k, 4, 16, 16)).astype(np.float32)]
  return Samples(images=images, attention=attention, words=WORDS)


def _png(path):
  return np.asarray(Image.open(path).convert("RGB"))


def _blocks(image, f):
  return np.repeat(np.repeat(image, f, 0), f, 1)


def test_samples_stay_at_the_models_resolution_views_are_enlarged(tmp_path):
  result = _samples()
  written = write_samples(str(tmp_path), TEXTS, result, all_stages=True, attention=True)
  assert sorted(os.path.basename(p) for p in written) == sorted(
      f"{i:06d}{suffix}.png" for i in range(2)
      for suffix in ("", "_stage0", "_stage1", "_stages", "_attention_stage1"))
  for i in range(2):
    stem = tmp_path / f"{i:06d}"
    # The data: the model's pixels, 1:1.
    np.testing.assert_array_equal(_png(f"{stem}.png"), result.images[-1][i, 0])
    for s in range(2):
      np.testing.assert_array_equal(_png(f"{stem}_stage{s}.png"), result.images[s][i, 0])
    # Every stage side by side: 128 px cells of exact blocks, the caption to the right.
    stages = _png(f"{stem}_stages.png")
    np.testing.assert_array_equal(
        stages, summaries.image_grid([[result.images[0][i, 0], result.images[1][i, 0]]],
                                     [TEXTS[i]]))
    np.testing.assert_array_equal(stages[2:130, 2:130], _blocks(result.images[0][i, 0], 8))
    np.testing.assert_array_equal(stages[2:130, 132:260], _blocks(result.images[1][i, 0], 4))
    assert (stages[2:130, 262:262 + summaries.CAPTION_WIDTH] < 128).any()
    # The attention maps: the image enlarged 4x, a word under each map, the caption beside.
    att = _png(f"{stem}_attention_stage1.png")
    np.testing.assert_array_equal(
        att, summaries.attention_overlay(result.images[1][i, 0], result.attention[0][i, 0],
                                         WORDS[i], TEXTS[i]))
    band = summaries.label_band_height()
    assert att.shape == (128 + band, 5 * 128 + summaries.CAPTION_WIDTH, 3)
    np.testing.assert_array_equal(att[:128, :128], _blocks(result.images[1][i, 0], 4))
    assert (att[:, 5 * 128:] < 128).any()
  assert (tmp_path / "captions.txt").read_text().splitlines() == [
      "000000\ta big red circle on the left\ta big red circle",
      "000001\ta small blue box\ta small blue box"]


def test_views_follow_min_side_and_the_sample_count(tmp_path):
  result = _samples(k=2)
  written = write_samples(str(tmp_path), TEXTS, result, attention=True, min_side=64)
  assert sorted(os.path.basename(p) for p in written) == sorted(
      f"{i:06d}_{j}{suffix}.png" for i in range(2) for j in range(2)
      for suffix in ("", "_attention"))
  att = _png(tmp_path / "000001_1_attention.png")
  assert att.shape[0] == 64 + summaries.label_band_height()
  np.testing.assert_array_equal(att[:64, :64], _blocks(result.images[1][1, 1], 2))
  np.testing.assert_array_equal(_png(tmp_path / "000001_1.png"), result.images[1][1, 1])
