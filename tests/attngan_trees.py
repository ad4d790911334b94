"""Tiny CUB and COCO folders in the AttnGAN layout, written by the tests:
JPEGs (one grey), caption files, Python-2-style pickles."""

import os

import numpy as np
from PIL import Image


def py2_pickle(obj) -> bytes:
  """Protocol-2 bytes as Python 2's cPickle writes them: `str` as
  SHORT_BINSTRING/BINSTRING (raw bytes, read back with latin-1), no globals."""
  out = bytearray(b"\x80\x02")

  def w(o):
    if isinstance(o, bool):
      out.extend(b"\x88" if o else b"\x89")
    elif isinstance(o, int):
      if 0 <= o < 256:
        out.extend(b"K" + bytes([o]))
      elif 0 <= o < 65536:
        out.extend(b"M" + o.to_bytes(2, "little"))
      else:
        out.extend(b"J" + o.to_bytes(4, "little", signed=True))
    elif isinstance(o, str):
      b = o.encode("latin1")
      out.extend((b"U" + bytes([len(b)]) if len(b) < 256
                  else b"T" + len(b).to_bytes(4, "little")) + b)
    elif isinstance(o, list):
      out.extend(b"]")
      if o:
        out.extend(b"(")
        for x in o:
          w(x)
        out.extend(b"e")
    elif isinstance(o, tuple):
      out.extend(b"(")
      for x in o:
        w(x)
      out.extend(b"t")
    elif isinstance(o, dict):
      out.extend(b"}")
      if o:
        out.extend(b"(")
        for k, v in o.items():
          w(k)
          w(v)
        out.extend(b"u")
    else:
      raise TypeError(type(o))

  w(obj)
  out.extend(b".")
  return bytes(out)


def write_pickle(path, obj) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(py2_pickle(obj))


def _jpeg(path, size, seed, grey=False):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rng = np.random.default_rng(seed)
  w, h = size
  # Smooth content so JPEG round trips stay close to the array.
  yy, xx = np.mgrid[0:h, 0:w]
  base = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)),
                   np.full_like(xx, rng.integers(0, 256))], -1).astype(np.uint8)
  img = Image.fromarray(base)
  (img.convert("L") if grey else img).save(path, quality=95)


COLOURS = ("red", "brown", "grey", "blue", "white", "black")


def caption_lines(key: str, n: int) -> list[str]:
  """n captions mentioning the key's number, with punctuation, capitals and an
  empty line that loaders must skip."""
  num = key.rsplit("_", 1)[-1]
  lines = [f"This Bird has a {COLOURS[k % len(COLOURS)]} crown, and wings number {num}."
           for k in range(n)]
  lines.insert(2, "")
  return lines


BIRD_CLASSES = {"001.Albatross": ("train", 3), "002.Auklet": ("train", 2),
                "003.Cowbird": ("test", 2)}


def make_birds(root, with_pickle: bool = True) -> dict:
  """A CUB tree: 5 train images of 2 classes, 2 test images of a third; boxes
  with fractional values; image sizes differ, one image is grey."""
  keys = {"train": [], "test": []}
  classes = {"train": [], "test": []}
  images_txt, boxes_txt, boxes = [], [], {}
  n = 0
  for class_dir, (split, count) in BIRD_CLASSES.items():
    for i in range(count):
      n += 1
      key = f"{class_dir}/{class_dir.split('.')[1]}_{n:04d}"
      keys[split].append(key)
      classes[split].append(int(class_dir[:3]))
      size = (120 + 10 * n, 90 + 7 * n)
      _jpeg(os.path.join(root, "CUB_200_2011", "images", key + ".jpg"), size, n, grey=n == 2)
      box = (5.7 + n, 8.2, 60.9 + 2 * n, 50.5 + n)
      boxes[key] = tuple(int(v) for v in box)
      images_txt.append(f"{n} {key}.jpg")
      boxes_txt.append(f"{n} {box[0]} {box[1]} {box[2]} {box[3]}")
      _write_text(os.path.join(root, "text", key + ".txt"), caption_lines(key, 10))
  _write_text(os.path.join(root, "CUB_200_2011", "images.txt"), images_txt)
  _write_text(os.path.join(root, "CUB_200_2011", "bounding_boxes.txt"), boxes_txt)
  for split in ("train", "test"):
    write_pickle(os.path.join(root, split, "filenames.pickle"), keys[split])
    write_pickle(os.path.join(root, split, "class_info.pickle"), classes[split])
  tree = {"keys": keys, "classes": classes, "boxes": boxes, "per_image": 10}
  if with_pickle:
    tree["vocab"] = _write_captions_pickle(root, keys, 10)
  return tree


def make_coco(root, with_pickle: bool = True) -> dict:
  """A COCO tree: 3 train and 2 test images in one images/ folder, 6 caption
  lines each (5 used), one grey image."""
  keys = {"train": [f"COCO_train2014_{i:012d}" for i in (9, 25, 30)],
          "test": [f"COCO_val2014_{i:012d}" for i in (42, 73)]}
  for n, key in enumerate(keys["train"] + keys["test"]):
    _jpeg(os.path.join(root, "images", key + ".jpg"), (100 + 20 * n, 80 + 5 * n), n,
          grey=n == 3)
    _write_text(os.path.join(root, "text", key + ".txt"), caption_lines(key, 6))
  for split in ("train", "test"):
    write_pickle(os.path.join(root, split, "filenames.pickle"), keys[split])
  tree = {"keys": keys, "per_image": 5}
  if with_pickle:
    tree["vocab"] = _write_captions_pickle(root, keys, 5)
  return tree


def _write_text(path, lines) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


def _write_captions_pickle(root, keys, per_image) -> list[str]:
  """A captions.pickle whose word ids differ from first-appearance order (as a
  released one does), so tests can tell a loaded vocabulary from a rebuilt one."""
  from mirrorgan_jax.data.vocab import tokenize  # pylint: disable=import-outside-toplevel
  caps = {s: [tokenize(line) for k in keys[s]
              for line in [x for x in caption_lines(k, per_image) if x]] for s in keys}
  words = sorted({w for s in caps for c in caps[s] for w in c}, reverse=True)
  ixtoword = {0: "<end>", **{i + 1: w for i, w in enumerate(words)}}
  wordtoix = {w: i for i, w in ixtoword.items()}
  ids = {s: [[wordtoix[w] for w in c] for c in caps[s]] for s in caps}
  write_pickle(os.path.join(root, "captions.pickle"),
               [ids["train"], ids["test"], ixtoword, wordtoix])
  return [ixtoword[i] for i in range(len(ixtoword))]


def break_birds(root, made) -> list[str]:
  """Breaks a `make_birds` tree in one place per kind of problem the reader
  checks (images, captions, pickles, boxes) and returns, for each, a part of
  the line the report must hold for it."""
  root = os.fspath(root)
  train, test = made["keys"]["train"], made["keys"]["test"]
  image = lambda key: os.path.join(root, "CUB_200_2011", "images", key + ".jpg")  # noqa: E731
  text = lambda key: os.path.join(root, "text", key + ".txt")  # noqa: E731
  with open(image(train[0]), "rb") as f:
    data = f.read()
  with open(image(train[0]), "wb") as f:  # a truncated JPEG
    f.write(data[:len(data) // 2])
  with open(image(train[1]), "w") as f:  # a text file named .jpg
    f.write("this is not a picture\n")
  open(image(test[0]), "wb").close()  # an empty file
  os.remove(text(train[2]))  # a missing caption file
  _write_text(text(train[3]), ["one caption", "", "and another"])  # too few captions
  os.remove(text(train[4]))  # a folder where the caption file should be
  os.makedirs(text(train[4]))
  os.remove(os.path.join(root, "test", "class_info.pickle"))  # a missing split pickle
  boxes = os.path.join(root, "CUB_200_2011", "bounding_boxes.txt")
  with open(boxes) as f:
    lines = f.read().splitlines()
  lines[1] = "2 7.5 eight 60 50"  # a bounding box that is not numbers
  _write_text(boxes, lines)
  return [f"CUB_200_2011/images/{train[0]}.jpg: not a readable image",
          f"CUB_200_2011/images/{train[1]}.jpg: not a readable image (no image format "
          "recognised; it holds text)",
          f"CUB_200_2011/images/{test[0]}.jpg: not a readable image (the file is empty)",
          f"text/{train[2]}.txt: missing",
          f"text/{train[3]}.txt: 2 non-empty captions, 10 needed",
          f"text/{train[4]}.txt: a folder, not a file",
          "test/class_info.pickle: missing (class ids)",
          "CUB_200_2011/bounding_boxes.txt: line 2: not numbers: '2 7.5 eight 60 50'"]
