"""The logging layer: files on disk (and none when disabled), image helpers."""

import glob
import json
import math
import os
import struct

import numpy as np
import pytest
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
    log.images(0, "x", np.zeros((4, 4, 3), np.uint8))
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


def test_image_grid_mixed_sizes():
  rng = np.random.default_rng(1)
  sizes = [(16, 16), (32, 32), (64, 64)]
  rows = [[rng.integers(0, 256, (h, w, 3), np.uint8) for h, w in sizes] for _ in range(2)]
  grid = summaries.image_grid(rows, pad=2)
  assert grid.dtype == np.uint8
  assert grid.shape == (2 * 64 + 3 * 2, 3 * 64 + 4 * 2, 3)
  # Row 1, column 0: the 16x16 image, each pixel a 4x4 block.
  y, x = 2 + 1 * (64 + 2), 2
  np.testing.assert_array_equal(grid[y:y + 64, x:x + 64],
                                np.repeat(np.repeat(rows[1][0], 4, 0), 4, 1))
  # Row 0, column 2: the largest image as it is.
  x = 2 + 2 * (64 + 2)
  np.testing.assert_array_equal(grid[2:66, x:x + 64], rows[0][2])
  assert (grid[:2] == 128).all() and (grid[:, 66:68] == 128).all()


def test_image_grid_ragged_rows_stay_grey():
  a = np.zeros((4, 4, 3), np.uint8)
  grid = summaries.image_grid([[a, a], [a]], pad=1)
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
  assert out.dtype == np.uint8
  assert out.shape == (s + band, (1 + t) * s, 3)  # no gaps between panels
  np.testing.assert_array_equal(out[:s, :s], image)
  for word, hot in ((0, "tl"), (1, "br")):
    panel = out[:s, (1 + word) * s:(2 + word) * s]
    diffs = _quadrant_diffs(panel, image)
    assert max(diffs, key=diffs.get) == hot, diffs
    assert diffs[hot] > 2 * min(diffs.values())
  # Labels: white under the image, ink under each word.
  assert (out[s:, :s] == 255).all()
  for word in range(t):
    label = out[s:, (1 + word) * s:(2 + word) * s]
    assert (label < 128).any()


def test_attention_overlay_cell_and_checks():
  image = np.full((64, 64, 3), 40, np.uint8)
  out = summaries.attention_overlay(image, _planted_attention(3, 4, 4), ["a", "b", "c"], cell=24)
  assert out.shape == (24 + summaries.label_band_height(), 4 * 24, 3)
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
