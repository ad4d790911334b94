"""The official loader's preprocessing, checked against hand computations."""

import io

import numpy as np
import pytest
from PIL import Image

from mirrorgan_jax.data import image_ops


def _image(w, h, seed=0):
  return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8))


def test_bbox_crop_uses_the_official_integer_arithmetic():
  # Box (60, 27, 325, 304) in 500x375: r = int(325 * 0.75) = 243,
  # cx = int(445 / 2) = 222, cy = int(358 / 2) = 179 -> [-21, -64, 465, 422],
  # clipped to the image.
  assert image_ops.bbox_crop_box((60, 27, 325, 304), 500, 375) == (0, 0, 465, 375)
  # Inside the image, odd sums truncate: cx = int(25 / 2) = 12, cy = int(81 / 2) = 40.
  assert image_ops.bbox_crop_box((5, 20, 15, 41), 200, 200) == (0, 10, 42, 70)
  # r = int(41 * 0.75) = 30, cx = int(70 / 2) = 35 -> x from 5 to 65.
  assert image_ops.bbox_crop_box((30, 100, 10, 41), 200, 300) == (5, 90, 65, 150)


def test_resize_shorter_side_like_torchvision_scale():
  assert image_ops.resize_shorter(_image(500, 375), 304).size == (405, 304)  # int(405.33)
  assert image_ops.resize_shorter(_image(300, 451), 304).size == (304, 457)  # int(457.01)
  same = _image(304, 400)
  assert image_ops.resize_shorter(same, 304) is same


def _coordinates(w, h):
  """Each pixel holds its own (x, y): R = x % 256, G = y % 256, B = high bits."""
  y, x = np.mgrid[0:h, 0:w]
  return np.stack([x % 256, y % 256, x // 256 + 2 * (y // 256)], -1).astype(np.uint8)


def test_crop_and_flip():
  a = _coordinates(310, 304)
  img = Image.fromarray(a)
  out = image_ops.crop_and_flip(img, 256, None)  # centre: top 24, left 27
  np.testing.assert_array_equal(np.asarray(out), a[24:280, 27:283])
  flips, corners = 0, set()
  for seed in range(40):
    got = np.asarray(image_ops.crop_and_flip(img, 256, np.random.default_rng(seed)))
    flipped = int(got[0, 0, 0]) != (int(got[0, 1, 0]) - 1) % 256
    corner = got[0, -1] if flipped else got[0, 0]
    top, left = int(corner[1]), int(corner[0]) + 256 * int(corner[2] % 2)
    window = a[top:top + 256, left:left + 256]
    np.testing.assert_array_equal(got, window[:, ::-1] if flipped else window)
    assert 0 <= top <= 48 and 0 <= left <= 54
    flips += int(flipped)
    corners.add((top, left))
  assert 8 < flips < 32 and len(corners) > 30
  with pytest.raises(ValueError, match="smaller than the 256 crop"):
    image_ops.crop_and_flip(_image(300, 200), 256, None)


def test_stages_match_pil_bilinear_and_value_range():
  square = _image(256, 256, seed=2)
  s64, s128, s256 = image_ops.stage_images(square, (64, 128, 256))
  np.testing.assert_array_equal(s256, np.asarray(square))
  np.testing.assert_array_equal(s64, np.asarray(square.resize((64, 64), Image.BILINEAR)))
  assert s128.shape == (128, 128, 3) and s128.dtype == np.uint8
  x = image_ops.to_model_range(np.array([0, 255, 127], np.uint8))
  np.testing.assert_allclose(x, [-1.0, 1.0, 127 / 127.5 - 1], rtol=0, atol=1e-7)


def test_official_chain_on_a_cub_like_photo():
  img = _image(500, 375, seed=3)
  out = image_ops.official_stages(img, (60, 27, 325, 304), (64, 128, 256),
                                  np.random.default_rng(0))
  assert [o.shape for o in out] == [(64, 64, 3), (128, 128, 3), (256, 256, 3)]
  # Without randomness: crop to box, shorter side 304, centre 256.
  # 465x375 -> (int(304 * 465 / 375), 304) = (376, 304); centre top 24, left 60.
  ref = img.crop((0, 0, 465, 375)).resize((376, 304), Image.BILINEAR)
  ref = np.asarray(ref)[24:280, 60:316]
  got = image_ops.official_stages(img, (60, 27, 325, 304), (64, 128, 256), None)
  np.testing.assert_array_equal(got[2], ref)


def test_decode_rgb_converts_grey_and_names_corrupt_files():
  buf = io.BytesIO()
  Image.fromarray(np.full((10, 12), 90, np.uint8)).save(buf, "JPEG")
  rgb = image_ops.decode_rgb(buf.getvalue(), "grey.jpg")
  assert rgb.mode == "RGB" and rgb.size == (12, 10)
  with pytest.raises(ValueError, match="broken.jpg: not a readable image"):
    image_ops.decode_rgb(b"\xff\xd8\xff\xe0 not really", "broken.jpg")
  buf = io.BytesIO()
  _image(64, 64).save(buf, "JPEG")
  with pytest.raises(ValueError, match="cut.jpg: not a readable image"):
    image_ops.decode_rgb(buf.getvalue()[:300], "cut.jpg")
