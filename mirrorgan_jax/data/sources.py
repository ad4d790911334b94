"""Random-access data sources with one interface for every dataset.

A source has a length, a vocabulary, and per index: `example(i)` (a PIL image
plus what the preprocessing needs), `caption_ids(i)` and `class_id(i)`
(cheap: no image is decoded, for drawing mismatched captions).

- `ShapesSource` renders the embedded dataset on the fly: every example is a
  pure function of (split, index, seed), so nothing is stored on disk; what was
  made is kept in memory (up to `cache_mb`), since a job visits every index
  several times, and draws it again as another example's mismatch.
- `TfdsSource` reads a prepared `attngan_birds` / `attngan_coco` TFDS dataset
  (array_record), decoding JPEGs itself so grey and CMYK files become RGB as in
  the official loader.
"""

import dataclasses
import functools
import os

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from mirrorgan_jax.data import image_ops, shapes, tfds_builders
from mirrorgan_jax.data.vocab import PAD_WORD, Vocabulary, tokenize


class DatasetNotPrepared(FileNotFoundError):
  """The TFDS dataset a config names has not been written yet; the message says
  how to prepare it."""


@dataclasses.dataclass(frozen=True)
class SourceExample:
  image: Image.Image | None  # RGB; None where `stages` holds it: see `picture`
  bbox: tuple[int, int, int, int] | None  # CUB box to crop to, else None
  caption_ids: tuple[np.ndarray, ...]  # every caption of the image, as ids
  class_id: int
  key: str
  # uint8 (s, s, 3) per stage size, where the source makes them itself (shapes):
  # the pipeline then resizes nothing.
  stages: tuple[np.ndarray, ...] | None = None

  def picture(self) -> Image.Image:
    """The image; made from the largest stage where the source keeps only the
    stages (a PIL image per example cost a quarter of a shapes batch's host time)."""
    return self.image if self.image is not None else Image.fromarray(self.stages[-1])


@dataclasses.dataclass(frozen=True)
class _Made:
  """What ShapesSource keeps of one example: all but the caption strings."""
  class_id: int
  caption_ids: tuple[np.ndarray, ...]
  stages: tuple[np.ndarray, ...]

  @property
  def nbytes(self) -> int:
    return sum(x.nbytes for x in self.stages)


class ShapesSource:
  """`length` examples of a shapes split, rendered at `size` pixels."""
  photographs = False  # no crop or flip: they would break positions and relations

  def __init__(self, split: str, size: int, length: int, seed: int = 0,
               heldout=shapes.DEFAULT_HELDOUT, stage_sizes=None, cache_mb: float = 0):
    if split not in shapes.SPLITS:
      raise ValueError(f"unknown shapes split {split!r}: use one of {shapes.SPLITS}")
    if length < 2:
      raise ValueError(f"a shapes split needs at least 2 examples, got {length}")
    self.split, self.size, self.length, self.seed = split, size, length, seed
    self.heldout = tuple(tuple(p) for p in heldout)
    self.stage_sizes = tuple(stage_sizes or (size,))
    if max(self.stage_sizes) != size:
      raise ValueError(f"stage sizes {self.stage_sizes} must end at the rendered size {size}")
    self.vocab = Vocabulary((PAD_WORD, *shapes.caption_words()))
    self.captions_per_image = shapes.CAPTIONS_PER_IMAGE
    # caption -> word ids. The templates repeat the same few thousand strings,
    # and tokenizing was a fifth of the input pipeline's time.
    self._ids: dict[str, np.ndarray] = {}
    # index -> _Made, while it fits in cache_mb (first made, first kept: the
    # values never change, so nothing is ever evicted). Rendering, captions
    # and resizing were nine tenths of the pipeline's time.
    self._made: dict[int, _Made] = {}
    self._cache_bytes, self._cached_bytes = int(cache_mb * 2**20), 0

  def __len__(self) -> int:
    return self.length

  def __getstate__(self) -> dict:
    # grain's worker processes get a copy: they start with an empty cache
    # rather than a pickle of hundreds of megabytes.
    return {**self.__dict__, "_made": {}, "_cached_bytes": 0}

  def _check(self, index: int) -> None:
    if not 0 <= index < self.length:
      raise IndexError(f"shapes {self.split} index {index} out of range [0, {self.length})")

  def captions(self, index: int) -> tuple[str, ...]:
    self._check(index)
    return shapes.captions(self.split, index, self.seed, self.heldout)

  def paraphrases(self, index: int) -> tuple[str, ...]:
    """The example's scene in phrasings its captions never use (`shapes.paraphrases`)."""
    self._check(index)
    return shapes.paraphrases(self.split, index, self.seed, self.heldout)

  def paraphrase_ids(self, index: int) -> tuple[np.ndarray, ...]:
    """Word ids of `paraphrases(index)`; words outside the vocabulary dropped."""
    return tuple(self._encode(c) for c in self.paraphrases(index))

  def _encode(self, caption: str) -> np.ndarray:
    ids = self._ids.get(caption)
    if ids is None:
      ids = np.asarray(self.vocab.encode(tokenize(caption))[0], np.int32)
      ids.flags.writeable = False  # shared between examples
      self._ids[caption] = ids
    return ids

  def _stages(self, image: np.ndarray) -> tuple[np.ndarray, ...]:
    stages = image_ops.stage_images(Image.fromarray(image), self.stage_sizes)
    for x in stages:
      x.flags.writeable = False  # shared between batches
    return stages

  def _get(self, index: int) -> _Made:
    self._check(index)
    made = self._made.get(index)
    if made is None:
      ex = shapes.example(self.split, index, self.seed, self.size, self.heldout)
      made = _Made(shapes.composition_id(ex.scene), tuple(self._encode(c) for c in ex.captions),
                   self._stages(ex.image))
      if self._cached_bytes + made.nbytes <= self._cache_bytes:
        self._made[index] = made
        self._cached_bytes += made.nbytes
    return made

  def caption_ids(self, index: int) -> tuple[np.ndarray, ...]:
    made = self._made.get(index)
    if made is not None:
      return made.caption_ids
    return tuple(self._encode(c) for c in self.captions(index))

  def class_id(self, index: int) -> int:
    made = self._made.get(index)
    if made is not None:
      return made.class_id
    self._check(index)
    return shapes.composition_id(shapes.sample_scene(self.split, index, self.seed,
                                                     self.heldout))

  def near_miss_example(self, index: int, rng: np.random.Generator) -> SourceExample | None:
    """Example `index` with one named thing changed (`shapes.near_miss`), with
    fresh captions; None when no change avoids the held-out pairs."""
    return self._edited(index, rng, shapes.near_miss, "near_miss")

  def recoloured_example(self, index: int, rng: np.random.Generator) -> SourceExample | None:
    """Example `index` in other colours, its outlines unchanged
    (`shapes.recolour`), with fresh captions; None when no colouring avoids
    the held-out pairs."""
    return self._edited(index, rng, shapes.recolour, "recoloured")

  def _edited(self, index, rng, edit, tag) -> SourceExample | None:
    self._check(index)
    scene = edit(shapes.sample_scene(self.split, index, self.seed, self.heldout), rng,
                 self.heldout)
    if scene is None:
      return None
    ids = tuple(self._encode(c) for c in shapes.captions_for(scene, rng))
    image = shapes.render(scene, self.size)
    return SourceExample(Image.fromarray(image), None, ids, shapes.composition_id(scene),
                         f"{self.split}/{index}/{tag}", self._stages(image))

  def example(self, index: int) -> SourceExample:
    made = self._get(index)
    return SourceExample(None, None, made.caption_ids,
                         made.class_id, f"{self.split}/{index}", made.stages)


class TfdsSource:
  """A split of a prepared attngan_birds / attngan_coco dataset."""
  photographs = True

  def __init__(self, kind: str, split: str, data_dir: str):
    b = tfds_builders.builder(kind, data_dir)
    if not b.is_prepared():
      raise DatasetNotPrepared(
          f"{b.data_dir}: the {kind} dataset is not prepared; run python -m "
          f"mirrorgan_jax.data.prepare --dataset={kind} --manual_dir=<your AttnGAN "
          f"{kind} folder> --data_dir={data_dir} (or set config.data.manual_dir)")
    if split not in b.info.splits:
      raise ValueError(f"{b.data_dir}: no split {split!r}; it has {list(b.info.splits)}")
    self.kind, self.split, self.path = kind, split, b.data_dir
    self._records = b.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})
    md = b.info.metadata
    self.vocab = Vocabulary(tuple(md["vocabulary"]))
    self.captions_per_image = int(md["captions_per_image"])
    self._class_ids = np.asarray(md["class_ids"][split], np.int64)

  def __len__(self) -> int:
    return len(self._records)

  def _record(self, index: int) -> dict:
    if not 0 <= index < len(self):
      raise IndexError(f"{self.kind} {self.split} index {index} out of range [0, {len(self)})")
    return self._records[index]

  @staticmethod
  def _split_ids(record) -> tuple[np.ndarray, ...]:
    ends = np.cumsum(record["caption_lens"])
    return tuple(np.split(np.asarray(record["caption_ids"], np.int32), ends[:-1]))

  def captions(self, index: int) -> tuple[str, ...]:
    return tuple(c.decode("utf-8") for c in self._record(index)["captions"])

  def caption_ids(self, index: int) -> tuple[np.ndarray, ...]:
    return self._split_ids(self._record(index))

  def class_id(self, index: int) -> int:
    return int(self._class_ids[index])

  def example(self, index: int) -> SourceExample:
    r = self._record(index)
    key = r["key"].decode("utf-8")
    image = image_ops.decode_rgb(r["image"], f"{self.path} {self.split} record {index} ({key})")
    bbox = tuple(int(v) for v in r["bbox"]) if "bbox" in r else None
    return SourceExample(image, bbox, self._split_ids(r), int(r["class_id"]), key)


@functools.lru_cache(maxsize=8)
def _shapes_source(*args) -> ShapesSource:
  """One source per process for equal arguments, so that its cache serves
  every phase of a job."""
  return ShapesSource(*args)


def make_source(config, split: str, size: int, stage_sizes=None):
  """The source of `split` for `config.dataset`, images at `size` (shapes:
  also at `stage_sizes`, ending at `size`) or as stored (photographs).
  Prepares a real dataset from config.data.manual_dir on first use."""
  if config.dataset == "shapes":
    s = config.data.shapes
    length = {"train": s.train_size, "test": s.test_size,
              "test_heldout": s.test_heldout_size}[split]
    return _shapes_source(split, size, length, s.seed, tuple(tuple(p) for p in s.heldout),
                          tuple(stage_sizes or (size,)), float(s.get("cache_mb", 0)))
  kind = config.dataset
  if kind not in tfds_builders.BUILDERS:
    raise ValueError(f"config.dataset={kind!r} has no data source; use shapes, birds or coco")
  data_dir = os.path.expanduser(config.data.data_dir)
  if config.data.manual_dir and not tfds_builders.builder(kind, data_dir).is_prepared():
    tfds_builders.prepare(kind, config.data.manual_dir, data_dir,
                          check_images=config.data.check_images)
  return TfdsSource(kind, split, data_dir)
