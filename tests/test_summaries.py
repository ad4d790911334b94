"""The logging layer: files on disk (and none when disabled), image helpers
(grids and attention maps scaled for viewing, captions beside them)."""

import glob
import json
import math
import os
import struct

import io

import numpy as np
import pytest
from PIL import Image
from tensorboardX.proto import event_pb2

from mirrorgan_jax import summaries


def _events(folder):
  """Every Event in the TFRecord files of `folder`, read without TensorFlow:
  u64 length, u32 crc, payload, u32 crc."""
  files = glob.glob(os.path.join(folder, "events.out.tfevents.*"))
  assert files, f"no event file in {folder}"
  out = []
  for path in files:
    data = open(path, "rb").read()
    pos = 0
    while pos < len(data):
      (n,) = struct.unpack("<Q", data[pos:pos + 8])
      event = event_pb2.Event()
      event.ParseFromString(data[pos + 12:pos + 12 + n])
      out.append(event)
      pos += 12 + n + 4
  return out


def _tree(path):
  return sorted(os.path.relpath(os.path.join(d, f), path)
                for d, dirs, files in os.walk(path) for f in dirs + files)


def test_run_log_writes_events_and_jsonl(tmp_path):
  image = np.random.default_rng(0).integers(0, 256, (8, 12, 3), np.uint8)
  with summaries.RunLog(str(tmp_path), "pretrain", True) as log:
    log.scalars(3, {"loss/d_0": 0.25, "loss/g": np.float32(1.5)})
    log.scalars(4, {"loss/d_0": float("nan"), "grad": float("inf"), "lr": -float("inf")})
    log.images(4, "samples", image)
    log.flush()
  with summaries.RunLog(str(tmp_path), "gan", True) as log:  # a second phase appends
    log.scalars(0, {"loss/g": 2.0})

  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  records = [json.loads(line) for line in lines]  # strict JSON: no bare NaN
  assert [r["phase"] for r in records] == ["pretrain", "pretrain", "gan"]
  assert [r["step"] for r in records] == [3, 4, 0]
  assert all(abs(r["time"] - records[0]["time"]) < 60 for r in records)
  assert records[0]["loss/d_0"] == 0.25 and records[0]["loss/g"] == 1.5
  assert type(records[0]["loss/g"]) is float
  assert (records[1]["loss/d_0"], records[1]["grad"], records[1]["lr"]) == ("nan", "inf", "-inf")
  assert "NaN" not in lines[1] and "Infinity" not in lines[1]

  events = _events(str(tmp_path / "tb" / "pretrain"))
  scalars = {(e.step, v.tag): v.simple_value for e in events for v in e.summary.value
             if v.HasField("simple_value")}
  assert scalars[(3, "loss/d_0")] == 0.25 and scalars[(3, "loss/g")] == 1.5
  assert math.isnan(scalars[(4, "loss/d_0")]) and scalars[(4, "grad")] == math.inf
  images = [v.image for e in events for v in e.summary.value if v.HasField("image")]
  assert len(images) == 1 and (images[0].height, images[0].width) == (8, 12)
  assert _events(str(tmp_path / "tb" / "gan"))


def test_run_log_rejects_reserved_names_and_bad_images(tmp_path):
  with summaries.RunLog(str(tmp_path), "p", True) as log:
    with pytest.raises(ValueError, match="clash"):
      log.scalars(0, {"step": 1.0})
    with pytest.raises(ValueError, match="uint8 HxWx3"):
      log.images(0, "x", np.zeros((4, 4, 3), np.float32))


def test_disabled_run_log_creates_nothing(tmp_path):
  workdir = tmp_path / "run"
  with summaries.RunLog(str(workdir), "pretrain", False) as log:
    log.scalars(0, {"loss": 1.0})
    log.images(0, "x", np.zeros((4, 4, 3), np.uint8), png=str(workdir / "samples" / "x.png"))
    log.flush()
  summaries.write_run_info(str(workdir), '{"a": 1}', False)
  assert not workdir.exists() and _tree(tmp_path) == []


def test_write_run_info(tmp_path):
  config = '{"batch_size": 8, "stages": [64, 128]}'
  summaries.write_run_info(str(tmp_path), config, True)
  assert _tree(tmp_path) == ["config.json", "devices.json", "versions.json"]
  assert (tmp_path / "config.json").read_text() == config
  versions = json.loads((tmp_path / "versions.json").read_text())
  assert set(versions) == {"python", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain",
                           "tensorflow-datasets", "ml-collections", "numpy", "pillow",
                           "tensorboardX"}
  assert versions["numpy"] == np.__version__
  devices = json.loads((tmp_path / "devices.json").read_text())
  assert devices["process_count"] == 1 and devices["process_index"] == 0
  assert len(devices["devices"]) == 8  # conftest's fake CPU devices
  assert set(devices["devices"][0]) == {"id", "platform", "device_kind", "process_index"}
  assert devices["devices"][0]["platform"] == "cpu"
  with pytest.raises(ValueError):
    summaries.write_run_info(str(tmp_path / "bad"), "{not json", True)


def test_version_of_a_missing_package():
  assert summaries._version("surely-not-a-package-xyz") == "not installed"


def _blocks(image, f):
  """Nearest-neighbour upscaling by an integer factor: each pixel an f x f block."""
  return np.repeat(np.repeat(image, f, 0), f, 1)


def test_run_log_png_is_the_tensorboard_image(tmp_path):
  rows = [[np.random.default_rng(r).integers(0, 256, (s, s, 3), np.uint8) for s in (16, 32)]
          for r in range(2)]
  grid = summaries.image_grid(rows, ["a big red circle on the left", ""])
  png = tmp_path / "samples" / "0000005_grid.png"
  with summaries.RunLog(str(tmp_path), "gan", True) as log:
    log.images(5, "samples/stages", grid, png=str(png))
  np.testing.assert_array_equal(np.asarray(Image.open(png)), grid)
  images = [(e.step, v.tag, v.image) for e in _events(str(tmp_path / "tb" / "gan"))
            for v in e.summary.value if v.HasField("image")]
  assert [(step, tag) for step, tag, _ in images] == [(5, "samples/stages")]
  shown = np.asarray(Image.open(io.BytesIO(images[0][2].encoded_image_string)).convert("RGB"))
  np.testing.assert_array_equal(shown, grid)


def test_view_factor():
  assert [summaries.view_factor(s) for s in (1, 16, 32, 48, 64, 100, 127, 128, 256)] == [
      128, 8, 4, 3, 2, 2, 2, 1, 1]
  assert summaries.view_factor(32, 200) == 7 and summaries.view_factor(32, 0) == 1
  assert summaries.VIEW_MIN_SIDE == 128


def test_image_grid_mixed_sizes():
  rng = np.random.default_rng(1)
  sizes = [(16, 16), (32, 32), (64, 64)]
  rows = [[rng.integers(0, 256, (h, w, 3), np.uint8) for h, w in sizes] for _ in range(2)]
  grid = summaries.image_grid(rows, pad=2, min_side=0)  # 1:1: the largest image sets the cell
  assert grid.dtype == np.uint8
  assert grid.shape == (2 * 64 + 3 * 2, 3 * 64 + 4 * 2, 3)
  # Row 1, column 0: the 16x16 image, each pixel a 4x4 block.
  y, x = 2 + 1 * (64 + 2), 2
  np.testing.assert_array_equal(grid[y:y + 64, x:x + 64], _blocks(rows[1][0], 4))
  # Row 0, column 2: the largest image as it is.
  x = 2 + 2 * (64 + 2)
  np.testing.assert_array_equal(grid[2:66, x:x + 64], rows[0][2])
  assert (grid[:2] == 128).all() and (grid[:, 66:68] == 128).all()


def test_image_grid_scales_small_images_to_min_side_by_nearest():
  """The shapes default's 16 and 32 px stages: cells of 128 px, each pixel
  of a 32 px image a 4x4 block and of a 16 px image an 8x8 block."""
  rng = np.random.default_rng(3)
  rows = [[rng.integers(0, 256, (s, s, 3), np.uint8) for s in (16, 32)] for _ in range(3)]
  grid = summaries.image_grid(rows, pad=2)
  assert grid.shape == (3 * 128 + 4 * 2, 2 * 128 + 3 * 2, 3)
  for r in range(3):
    y = 2 + r * (128 + 2)
    np.testing.assert_array_equal(grid[y:y + 128, 2:130], _blocks(rows[r][0], 8))
    np.testing.assert_array_equal(grid[y:y + 128, 132:260], _blocks(rows[r][1], 4))
  # An integer factor: 48 px -> 144 (3x); a larger minimum; large images stay 1:1.
  a48 = rng.integers(0, 256, (48, 48, 3), np.uint8)
  np.testing.assert_array_equal(summaries.image_grid([[a48]], pad=0), _blocks(a48, 3))
  np.testing.assert_array_equal(summaries.image_grid([[rows[0][1]]], pad=0, min_side=256),
                                _blocks(rows[0][1], 8))
  for side in (128, 200):
    big = rng.integers(0, 256, (side, side, 3), np.uint8)
    np.testing.assert_array_equal(summaries.image_grid([[big]], pad=0), big)


def test_image_grid_writes_each_caption_beside_its_row():
  image = np.full((32, 32, 3), 200, np.uint8)
  captions = ["a big red circle on the left", "", None, "a small blue box"]
  grid = summaries.image_grid([[image, image]] * 4, captions, pad=2)
  width = summaries.CAPTION_WIDTH
  text_x = 2 * 128 + 3 * 2
  assert grid.shape == (4 * 128 + 5 * 2, text_x + width + 2, 3)
  for r, caption in enumerate(captions):
    y = 2 + r * (128 + 2)
    strip = grid[y:y + 128, text_x:text_x + width]
    np.testing.assert_array_equal(strip, summaries.caption_strip(caption, 128, width))
    if caption:
      assert (strip < 128).any(), r  # ink
      assert (strip == 255).mean() > 0.8  # on white
    else:
      assert (strip == 255).all(), r
  assert (grid[:, -2:] == 128).all() and (grid[:2] == 128).all()  # the frame
  assert not (grid[1 * 130:1 * 130 + 2, text_x:] < 128).any()  # text stays in its row
  with pytest.raises(ValueError, match="2 captions for 4 rows"):
    summaries.image_grid([[image]] * 4, ["a", "b"])


def test_wrap_caption():
  font = summaries._font()
  text = "this bird has a white belly and breast with a short pointy bill and brown wings"
  lines = summaries.wrap_caption(text, 120, 10)
  assert len(lines) > 1 and " ".join(lines) == text  # broken between words only
  assert all(font.getlength(line) <= 120 for line in lines)
  cut = summaries.wrap_caption(text, 120, 2)
  assert len(cut) == 2 and cut[0] == lines[0] and cut[1].endswith("...")
  assert font.getlength(cut[1]) <= 120
  long = summaries.wrap_caption("a " + "x" * 60 + " b", 50, 10)
  assert "".join(long[1:-1]) == "x" * 60 and long[0] == "a" and long[-1] == "b"
  assert all(font.getlength(line) <= 50 for line in long)
  assert summaries.wrap_caption("", 50, 3) == [] and summaries.wrap_caption("a b", 50, 0) == ["a b"]
  # A caption longer than its row has room for ends in "..." inside the strip.
  strip = summaries.caption_strip(" ".join([text] * 5), 40, 128)
  assert strip.shape == (40, 128, 3) and (strip < 128).any()


def test_image_grid_ragged_rows_stay_grey():
  a = np.zeros((4, 4, 3), np.uint8)
  grid = summaries.image_grid([[a, a], [a]], pad=1, min_side=0)
  assert grid.shape == (11, 11, 3)
  assert (grid[6:10, 6:10] == 128).all() and (grid[6:10, 1:5] == 0).all()


def test_to_uint8():
  # numpy rounds halves to even: (0 + 1) * 127.5 = 127.5 -> 128.
  got = summaries.to_uint8([-1.0, 0.0, 1.0, -3.0, 2.0, float("nan")])
  np.testing.assert_array_equal(got, [0, 128, 255, 0, 255, 0])
  assert got.dtype == np.uint8
  assert summaries.to_uint8(np.zeros((2, 4, 4, 3))).shape == (2, 4, 4, 3)


def _planted_attention(t, h, w):
  """Word 0 looks at the top-left, word 1 at the bottom-right."""
  a = np.full((t, h, w), 1e-3, np.float32)
  a[0, :2, :2] = 0.2
  a[1, -2:, -2:] = 0.05  # a weaker word: normalised by its own max
  return a


def _quadrant_diffs(panel, image):
  d = np.abs(panel.astype(np.float32) - image.astype(np.float32)).mean(-1)
  s = d.shape[0] // 2
  return {"tl": d[:s, :s].mean(), "tr": d[:s, s:].mean(),
          "bl": d[s:, :s].mean(), "br": d[s:, s:].mean()}


def test_attention_overlay_layout_and_peaks():
  s, t = 32, 2
  image = np.random.default_rng(2).integers(0, 64, (s, s, 3), np.uint8)  # dark: heat stands out
  out = summaries.attention_overlay(image, _planted_attention(t, 8, 8), ["bird", "wing"])
  band = summaries.label_band_height()
  big = 128  # 32 px scaled by 4 to the default minimum of 128
  assert out.dtype == np.uint8
  assert out.shape == (big + band, (1 + t) * big, 3)  # no gaps between panels, no caption
  np.testing.assert_array_equal(out[:big, :big], _blocks(image, 4))  # nearest, exact blocks
  for word, hot in ((0, "tl"), (1, "br")):
    panel = out[:big, (1 + word) * big:(2 + word) * big]
    diffs = _quadrant_diffs(panel, _blocks(image, 4))
    assert max(diffs, key=diffs.get) == hot, diffs
    assert diffs[hot] > 2 * min(diffs.values())
  # Labels: white under the image, ink under each word.
  assert (out[big:, :big] == 255).all()
  for word in range(t):
    label = out[big:, (1 + word) * big:(2 + word) * big]
    assert (label < 128).any()


def test_attention_overlay_caption_beside_the_maps():
  image = np.full((16, 16, 3), 40, np.uint8)
  words = ["a", "red", "circle"]
  out = summaries.attention_overlay(image, _planted_attention(3, 8, 8), words,
                                    "a red circle on the left")
  height = 128 + summaries.label_band_height()
  assert out.shape == (height, 4 * 128 + summaries.CAPTION_WIDTH, 3)
  np.testing.assert_array_equal(out[:128, :128], _blocks(image, 8))
  strip = out[:, 4 * 128:]
  np.testing.assert_array_equal(strip, summaries.caption_strip("a red circle on the left", height))
  assert (strip < 128).any()
  np.testing.assert_array_equal(  # the maps are those drawn without a caption
      out[:, :4 * 128], summaries.attention_overlay(image, _planted_attention(3, 8, 8), words))
  empty = summaries.attention_overlay(image, _planted_attention(3, 8, 8), words, "")
  assert (empty[:, 4 * 128:] == 255).all()


def test_attention_overlay_min_side_cell_and_checks():
  image = np.random.default_rng(4).integers(0, 256, (64, 64, 3), np.uint8)
  att = _planted_attention(3, 4, 4)
  band = summaries.label_band_height()
  for kwargs, side in (({}, 128), ({"min_side": 0}, 64), ({"min_side": 0, "cell": 24}, 64),
                       ({"min_side": 0, "cell": 100}, 128), ({"min_side": 256}, 256)):
    out = summaries.attention_overlay(image, att, ["a", "b", "c"], **kwargs)
    assert out.shape == (side + band, 4 * side, 3), kwargs
    np.testing.assert_array_equal(out[:side, :side], _blocks(image, side // 64))
  big = np.random.default_rng(5).integers(0, 256, (256, 256, 3), np.uint8)
  out = summaries.attention_overlay(big, att, ["a", "b", "c"])
  np.testing.assert_array_equal(out[:256, :256], big)  # already large: 1:1
  with pytest.raises(ValueError, match="3 words"):
    summaries.attention_overlay(image, _planted_attention(2, 4, 4), ["a", "b", "c"])


def test_heat_colormap_endpoints():
  np.testing.assert_allclose(summaries.heat_colormap(np.array([0.0, 1 / 3, 2 / 3, 1.0])),
                             [[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]], atol=1e-6)


def test_progress(capsys):
  bar = summaries.Progress(total=100, initial=10, desc="pretrain", enabled=True)
  bar.update(40, {"loss": 0.123456, "acc": 12345.0})
  bar.close()
  err = capsys.readouterr().err
  assert "pretrain" in err and "40/100" in err
  assert "loss=0.123" in err and "acc=1.23e+04" in err
  quiet = summaries.Progress(total=100, initial=0, desc="pretrain", enabled=False)
  quiet.update(5, {"loss": 1.0})
  quiet.close()
  captured = capsys.readouterr()
  assert captured.err == "" and captured.out == ""
