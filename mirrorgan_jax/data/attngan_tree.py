"""Reading and validating a user's CUB-200 or COCO-2014 folder in the AttnGAN
layout (reference section 13), before anything is written.

birds/                                     coco/
  captions.pickle (or bird_captions.pickle)  captions.pickle
  train/filenames.pickle                     train/filenames.pickle
  train/class_info.pickle                    test/filenames.pickle
  test/filenames.pickle                      text/<key>.txt
  test/class_info.pickle                     images/<key>.jpg
  text/<key>.txt
  CUB_200_2011/images.txt
  CUB_200_2011/bounding_boxes.txt
  CUB_200_2011/images/<key>.jpg

Every problem found is collected, and all of them are reported together in one
`DatasetTreeError`, each naming its file (and line where there is one).
"""

import concurrent.futures
import dataclasses
import logging
import os
import re
from typing import Sequence

from PIL import UnidentifiedImageError

from mirrorgan_jax.data import image_ops, safe_pickle
from mirrorgan_jax.data.vocab import (CaptionsPickle, Vocabulary, load_captions_pickle,
                                      save_captions_pickle, tokenize)

SPLITS = ("train", "test")
MAX_LISTED = 25


@dataclasses.dataclass(frozen=True)
class Layout:
  captions_per_image: int
  image_dir: str
  captions_pickles: tuple[str, ...]  # looked for in this order
  has_bbox: bool
  has_classes: bool


LAYOUTS = {
    "birds": Layout(10, "CUB_200_2011/images", ("captions.pickle", "bird_captions.pickle"),
                    has_bbox=True, has_classes=True),
    "coco": Layout(5, "images", ("captions.pickle",), has_bbox=False, has_classes=False),
}


class DatasetTreeError(ValueError):
  """The folder does not hold a complete dataset; the message lists every problem."""


@dataclasses.dataclass(frozen=True)
class Record:
  key: str
  image_path: str
  captions: tuple[str, ...]  # the caption lines used, as in the text file
  caption_ids: tuple[tuple[int, ...], ...]
  class_id: int
  bbox: tuple[int, int, int, int] | None  # x, y, w, h as the loader's astype(int)


@dataclasses.dataclass(frozen=True)
class Tree:
  kind: str
  root: str
  splits: dict[str, list[Record]]
  vocab: Vocabulary
  vocab_file: str  # the captions pickle the ids come from


class _Problems:
  """Every problem found, each with its file; one report at the end."""

  def __init__(self, root: str, folders: Sequence[str] = ()):
    self.root = root
    self.folders = tuple(folders)  # where many problems are summarised by count
    self.items: list[tuple[str, str]] = []

  def add(self, path: str, message: str) -> None:
    self.items.append((os.path.relpath(os.fspath(path), self.root), message))

  def _group(self, rel: str) -> str:
    for folder in self.folders:
      if rel == folder or rel.startswith(folder + os.sep):
        return folder + os.sep
    return rel

  def raise_if_any(self) -> None:
    if not self.items:
      return
    shown = [f"{rel}: {message}" for rel, message in self.items[:MAX_LISTED]]
    rest = self.items[MAX_LISTED:]
    if rest:
      counts: dict[str, int] = {}
      for rel, _ in rest:
        counts[self._group(rel)] = counts.get(self._group(rel), 0) + 1
      shown.append(f"... and {len(rest)} more: "
                   + ", ".join(f"{n} in {where}" for where, n in counts.items()))
    raise DatasetTreeError(
        f"{self.root}: {len(self.items)} problem(s) in the dataset folder:\n  "
        + "\n  ".join(shown))


def _load_list(path: str, problems: _Problems, what: str) -> list | None:
  if not os.path.isfile(path):
    problems.add(path, f"a folder, not a file ({what})" if os.path.isdir(path)
                 else f"missing ({what})")
    return None
  try:
    obj = safe_pickle.load(path)
  except (ValueError, OSError) as e:
    problems.add(path, str(e).removeprefix(f"{path}: "))
    return None
  if not isinstance(obj, (list, tuple)):
    problems.add(path, f"expected a list ({what}), found a {type(obj).__name__}")
    return None
  return list(obj)


def _read_lines(path: str, problems: _Problems) -> list[str] | None:
  if not os.path.isfile(path):
    problems.add(path, "a folder, not a file" if os.path.isdir(path) else "missing")
    return None
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    problems.add(path, f"cannot be read ({e.strerror or e})")
    return None
  # AttnGAN decodes as UTF-8; invalid bytes become U+FFFD, which tokenize()
  # treats as the official code does.
  return data.decode("utf-8", errors="replace").split("\n")


def _cub_bboxes(root: str, problems: _Problems) -> tuple[dict[str, tuple[int, ...]], set]:
  """(key -> bbox, matching rows of bounding_boxes.txt to images.txt by line;
  every key images.txt lists, a box found or not)."""
  images_txt = os.path.join(root, "CUB_200_2011", "images.txt")
  boxes_txt = os.path.join(root, "CUB_200_2011", "bounding_boxes.txt")
  names, boxes = _read_lines(images_txt, problems), _read_lines(boxes_txt, problems)
  if names is None or boxes is None:
    return {}, set()
  names = [(n, line) for n, line in enumerate(names, 1) if line.strip()]
  boxes = [(n, line) for n, line in enumerate(boxes, 1) if line.strip()]
  listed = {os.path.splitext(line.split()[1])[0] for _, line in names if len(line.split()) == 2}
  if len(names) != len(boxes):
    problems.add(boxes_txt, f"{len(boxes)} boxes for {len(names)} images in images.txt")
  out = {}
  for (ln, name_line), (lb, box_line) in zip(names, boxes):
    parts, fields = name_line.split(), box_line.split()
    if len(parts) != 2:
      problems.add(images_txt, f"line {ln}: expected '<id> <class_dir>/<file>.jpg'")
      continue
    if len(fields) != 5:
      problems.add(boxes_txt, f"line {lb}: expected '<id> <x> <y> <w> <h>'")
      continue
    if fields[0] != parts[0]:
      problems.add(boxes_txt, f"line {lb}: image id {fields[0]} but images.txt "
                   f"line {ln} has id {parts[0]}")
      continue
    try:
      box = tuple(int(float(v)) for v in fields[1:])  # pandas astype(int): truncation
    except ValueError:
      problems.add(boxes_txt, f"line {lb}: not numbers: {box_line.strip()!r}")
      continue
    if box[2] <= 0 or box[3] <= 0:
      problems.add(boxes_txt, f"line {lb}: empty box {box}")
      continue
    out[os.path.splitext(parts[1])[0]] = box
  return out, listed


def _captions(path: str, per_image: int, problems: _Problems) -> tuple[str, ...] | None:
  """The first `per_image` non-empty captions of a text file (AttnGAN's
  `load_captions` skips empty lines and lines with no token)."""
  lines = _read_lines(path, problems)
  if lines is None:
    return None
  kept = tuple(line.rstrip("\r") for line in lines if tokenize(line))[:per_image]
  if len(kept) < per_image:
    problems.add(path, f"{len(kept)} non-empty captions, {per_image} needed")
    return None
  return kept


def _image_problem(path: str) -> str | None:
  """Why the image at `path` cannot be used, or None."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    return f"cannot be read ({e.strerror or e})"
  if not data:
    return "not a readable image (the file is empty)"
  try:
    image_ops.decode_rgb(data, path)
    return None
  except ValueError as e:
    if isinstance(e.__cause__, UnidentifiedImageError):
      head = data[:64]
      looks = ("; it holds text" if all(32 <= b < 127 or b in b"\t\r\n" for b in head)
               else "")
      return f"not a readable image (no image format recognised{looks})"
    # No object reprs (PIL names its BytesIO): the message is about the file.
    return re.sub(r" ?<[^<>]* object at 0x[0-9a-f]+>", "", str(e).removeprefix(f"{path}: "))


def _check_images(paths: Sequence[str], problems: _Problems, workers: int) -> None:
  # PIL releases the GIL while decoding, so threads use every core.
  with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
    for path, why in zip(paths, pool.map(_image_problem, paths, chunksize=64)):
      if why:
        problems.add(path, why)


def find_captions_pickle(root: str, kind: str) -> str | None:
  for name in LAYOUTS[kind].captions_pickles:
    path = os.path.join(root, name)
    if os.path.isfile(path):
      return path
  return None


def read_tree(root: str | os.PathLike, kind: str, check_images: bool = True,
              workers: int = 8) -> Tree:
  """Validates the whole folder and returns its records, or raises
  DatasetTreeError listing every problem. When no captions pickle exists, the
  vocabulary is built from the text files and written to `captions.pickle`
  (only after the whole tree has passed)."""
  if kind not in LAYOUTS:
    raise ValueError(f"unknown dataset kind {kind!r}: use one of {tuple(LAYOUTS)}")
  layout = LAYOUTS[kind]
  root = os.path.abspath(os.path.expanduser(os.fspath(root)))
  if not os.path.isdir(root):
    what = "not a folder" if os.path.exists(root) else "no such folder"
    raise DatasetTreeError(f"{root}: {what} (expected the {kind} dataset in the AttnGAN "
                           "layout)")
  if not os.listdir(root):
    raise DatasetTreeError(f"{root}: the folder is empty; expected the {kind} dataset "
                           "in the AttnGAN layout (see README, 'Real datasets')")
  problems = _Problems(root, (layout.image_dir, "text"))
  # A missing folder is one problem, not one per key.
  folders = {}
  for name, what in ((layout.image_dir, "the images, <key>.jpg"),
                     ("text", "the captions, <key>.txt")):
    path = os.path.join(root, name)
    folders[name] = os.path.isdir(path)
    if not folders[name]:
      problems.add(path, f"{'not a' if os.path.exists(path) else 'missing'} folder ({what})")
  pickle_path = find_captions_pickle(root, kind)
  captions_pickle = None
  if pickle_path is not None:
    try:
      captions_pickle = load_captions_pickle(pickle_path)
    except (ValueError, OSError) as e:
      problems.add(pickle_path, str(e).removeprefix(f"{pickle_path}: "))
  bboxes, listed = _cub_bboxes(root, problems) if layout.has_bbox else ({}, set())

  keys, classes = {}, {}
  for split in SPLITS:
    fn_path = os.path.join(root, split, "filenames.pickle")
    names = _load_list(fn_path, problems, "image keys")
    if names is None:
      continue
    if not names:
      problems.add(fn_path, "no keys")
    bad = [k for k in names if not isinstance(k, str)]
    if bad:
      problems.add(fn_path, f"keys must be strings, found {bad[0]!r}")
      continue
    keys[split] = names
    if layout.has_classes:
      ci_path = os.path.join(root, split, "class_info.pickle")
      ids = _load_list(ci_path, problems, "class ids")
      if ids is not None and len(ids) != len(names):
        problems.add(ci_path, f"{len(ids)} class ids for {len(names)} keys in filenames.pickle")
      elif ids is not None and not all(isinstance(c, int) for c in ids):
        problems.add(ci_path, "class ids must be integers")
      elif ids is not None:
        classes[split] = ids
    else:
      classes[split] = list(range(len(names)))  # COCO: every image its own class
  if "train" in keys and "test" in keys:
    both = set(keys["train"]) & set(keys["test"])
    if both:
      problems.add(os.path.join(root, "test", "filenames.pickle"),
                   f"{len(both)} keys also in train, e.g. {sorted(both)[0]!r}")

  texts: dict[str, list] = {}
  image_paths = []
  for split, names in keys.items():
    seen = set()
    texts[split] = []
    for key in names:
      if key in seen:
        problems.add(os.path.join(root, split, "filenames.pickle"), f"key {key!r} listed twice")
      seen.add(key)
      image = os.path.join(root, layout.image_dir, key + ".jpg")
      if os.path.isfile(image):
        image_paths.append(image)
      elif folders[layout.image_dir]:
        problems.add(image, f"missing (key {key!r} of {split}/filenames.pickle)")
      if layout.has_bbox and listed and key not in listed:
        problems.add(os.path.join(root, "CUB_200_2011", "images.txt"),
                     f"no line for key {key!r} of {split}/filenames.pickle")
      texts[split].append(_captions(os.path.join(root, "text", key + ".txt"),
                                    layout.captions_per_image, problems)
                          if folders["text"] else None)
  if captions_pickle is not None:
    for split in keys:
      got = len(getattr(captions_pickle, split))
      want = len(keys[split]) * layout.captions_per_image
      if got != want:
        problems.add(pickle_path, f"{got} {split} captions, expected {want} "
                     f"({len(keys[split])} keys x {layout.captions_per_image})")
  if check_images:  # in the same report as the rest: one run shows every problem
    _check_images(list(dict.fromkeys(image_paths)), problems, workers)
  problems.raise_if_any()

  if captions_pickle is None:
    captions_pickle = _build_captions_pickle(texts)
    pickle_path = os.path.join(root, LAYOUTS[kind].captions_pickles[0])
    save_captions_pickle(pickle_path, captions_pickle)
    logging.warning("%s: no captions pickle found; built a vocabulary of %d words from "
                    "text/ and wrote it. Released text encoders need the pickle they were "
                    "trained with.", pickle_path, len(captions_pickle.vocab))
  cpi = layout.captions_per_image
  splits = {}
  for split, names in keys.items():
    flat = getattr(captions_pickle, split)
    splits[split] = [
        Record(key=key,
               image_path=os.path.join(root, layout.image_dir, key + ".jpg"),
               captions=texts[split][i],
               caption_ids=tuple(tuple(c) for c in flat[i * cpi:(i + 1) * cpi]),
               class_id=int(classes[split][i]),
               bbox=bboxes.get(key) if layout.has_bbox else None)
        for i, key in enumerate(names)]
  return Tree(kind, root, splits, captions_pickle.vocab, pickle_path)


def _build_captions_pickle(texts: dict[str, list]) -> CaptionsPickle:
  tokenized = {s: [tokenize(c) for caps in texts[s] for c in caps] for s in SPLITS}
  vocab = Vocabulary.build(tokenized["train"] + tokenized["test"])
  encode = lambda toks: vocab.encode(toks)[0]  # noqa: E731  every word is known
  return CaptionsPickle([encode(t) for t in tokenized["train"]],
                        [encode(t) for t in tokenized["test"]], vocab)

