"""The input pipeline: grain over a data source, deterministic, resumable and
sharded per process.

Order. One global stream of example indices, `range(n).shuffle(seed).repeat()`
(grain reshuffles each epoch with seed + epoch). Global batch s is stream
positions [s*B, (s+1)*B); process p of P reads rows [p*B/P, (p+1)*B/P) of it, so
every process reads only its share, and the global batch is the same for any
number of processes (batches may straddle an epoch boundary; the official
loader drops the last partial batch of each epoch instead).

Randomness. Everything random about an example (which caption, the word
subset of a long caption, the crop, the flip, the mismatched caption) comes
from numpy's generator seeded with (seed, stream position): independent of the
number of processes, workers and threads, and of where a run was resumed.

Resuming. The iterator's `get_state()` is a small dict (the next batch index
per worker); `set_state()` on a fresh iterator continues with exactly the
batches the uninterrupted one would have given. [train] saves it with
`grain.checkpoint.CheckpointSave`.
"""

from typing import Sequence

import grain
from absl import flags
import jax
import numpy as np

from mirrorgan_jax import parallel
from mirrorgan_jax.config_check import ConfigError, stage_sizes
from mirrorgan_jax.data import image_ops, sources
from mirrorgan_jax.data.vocab import VocabularyError, encode_caption

MISMATCH_DRAWS = 1000


class _HostRows(grain.MapDataset):
  """Element k of process p: stream position s*B + p*b + j (k = s*b + j),
  paired with the stream's value there."""

  def __init__(self, parent: grain.MapDataset, global_batch: int, process_index: int,
               process_count: int):
    super().__init__(parent)
    if global_batch % process_count:
      raise ConfigError(f"config.batch_size ({global_batch}) must be divisible by the "
                       f"number of processes ({process_count})")
    self._global, self._local = global_batch, global_batch // process_count
    self._offset = process_index * self._local
    self._length = len(parent) // global_batch * self._local

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    step, row = divmod(index, self._local)
    position = step * self._global + self._offset + row
    return position, self._parent[position]

  def __str__(self) -> str:
    return f"_HostRows(offset={self._offset}, local={self._local}, global={self._global})"


class _Examples(grain.transforms.Map):
  """(stream position, value) -> one example of the batch contract, uint8 images."""

  def __init__(self, source, sizes: Sequence[int], words_num: int, seed: int, train: bool,
               twins: str = "", twin_every: int = 2):
    self.source, self.sizes, self.words_num = source, tuple(sizes), words_num
    self.seed, self.train, self.twin_every = seed, train, twin_every
    self.twin = {"": None, "near_misses": "near_miss_example",
                 "colour_twins": "recoloured_example"}[twins]

  def _images(self, ex, rng):
    if self.source.photographs:
      return image_ops.official_stages(ex.image, ex.bbox, self.sizes, rng)
    if ex.stages is not None and tuple(x.shape[0] for x in ex.stages) == self.sizes:
      return ex.stages
    return image_ops.stage_images(ex.picture(), self.sizes)

  def _mismatch(self, index: int, class_id: int, rng) -> int:
    """Another image of another class (for COCO and shapes: another image whose
    captions describe something else)."""
    for _ in range(MISMATCH_DRAWS):
      j = int(rng.integers(len(self.source)))
      if j != index and self.source.class_id(j) != class_id:
        return j
    raise RuntimeError(f"no example of a class other than {class_id} found in "
                       f"{MISMATCH_DRAWS} draws; the split needs several classes")

  def map(self, element):
    position, value = element
    if self.train:  # value: an image index; one random caption of it
      rng = np.random.default_rng([self.seed, position])
      index = value
      # With twins, the last position of every `twin_every` holds the previous
      # row's image with one named thing changed (near misses) or in other
      # colours (colour twins), or where none can be, the image itself (same
      # class, so the DAMSM losses mask the pair).
      twin = (getattr(self.source, self.twin)(index, rng)
              if self.twin and position % self.twin_every == self.twin_every - 1 else None)
      ex = twin or self.source.example(index)
      k = int(rng.integers(len(ex.caption_ids)))
      caption, length = encode_caption(ex.caption_ids[k], self.words_num, rng)
      other = self._mismatch(index, ex.class_id, rng)
      wrong_ids = self.source.caption_ids(other)
      wrong, wrong_len = encode_caption(wrong_ids[int(rng.integers(len(wrong_ids)))],
                                        self.words_num, rng)
      extra = {"wrong_captions": wrong, "wrong_caption_lens": np.int32(wrong_len),
               "wrong_indices": np.int32(other)}
    else:  # value: a flat caption index (image-major); every caption in order
      rng = None
      valid = value < len(self.source) * self.source.captions_per_image
      value = value if valid else 0  # padding rows repeat the first caption
      index, k = divmod(value, self.source.captions_per_image)
      ex = self.source.example(index)
      caption, length = encode_caption(ex.caption_ids[k], self.words_num)
      extra = {"caption_index": np.int32(k), "valid": np.bool_(valid)}
    return {"images": self._images(ex, rng), "captions": caption,
            "caption_lens": np.int32(length), "class_ids": np.int32(ex.class_id),
            "indices": np.int32(index), **extra}


class _Twins(grain.MapDataset):
  """Groups of `every` elements, the last a repeat of the one before: element
  i is the parent's (i // every) * (every - 1) + min(i % every, every - 2)
  (every 2: each value twice in a row)."""

  def __init__(self, parent, every: int):
    super().__init__(parent)
    self._every = every

  def __len__(self) -> int:
    return len(self._parent)

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    g = self._every
    return self._parent[(index // g) * (g - 1) + min(index % g, g - 2)]

  def __str__(self) -> str:
    return f"_Twins(every={self._every})"


def _process(process_index, process_count):
  return (jax.process_index() if process_index is None else process_index,
          jax.process_count() if process_count is None else process_count)


def train_dataset(source, *, batch_size: int, sizes: Sequence[int], words_num: int,
                  seed: int, process_index: int | None = None,
                  process_count: int | None = None, near_misses: bool = False,
                  colour_twins: bool = False, twin_every: int = 2) -> grain.MapDataset:
  """Endless host-local training batches (batch_size / process_count rows).
  `near_misses` (shapes only): rows come in pairs, an image and its near miss
  (`ShapesSource.near_miss_example`). `colour_twins` (shapes only): the last
  row of every `twin_every` is the row before it in other colours
  (`ShapesSource.recoloured_example`)."""
  p, n = _process(process_index, process_count)
  if len(source) < 2:
    raise ValueError(f"a training split needs at least 2 examples, got {len(source)}")
  stream = grain.MapDataset.range(len(source)).shuffle(seed=seed % 2**32).repeat()
  if near_misses and colour_twins:
    raise ValueError("a batch pairs its rows as near misses or as colour twins, not both")
  twins = "near_misses" if near_misses else "colour_twins" if colour_twins else ""
  every = twin_every if colour_twins else 2
  if twins:
    name = twins.replace("_", " ")
    if not hasattr(source, "near_miss_example"):
      raise ValueError(f"{name} need the shapes dataset")
    if every < 2 or (batch_size // n) % every:
      raise ValueError(f"{name} come in groups of {every} rows: the batch per process "
                       f"({batch_size} / {n}) must be a multiple of {every}")
    stream = _Twins(stream, every)
  rows = _HostRows(stream, batch_size, p, n)
  return rows.map(_Examples(source, sizes, words_num, seed, train=True, twins=twins,
                            twin_every=every)).batch(batch_size // n, drop_remainder=True)


def eval_dataset(source, *, batch_size: int, sizes: Sequence[int], words_num: int,
                 process_index: int | None = None,
                 process_count: int | None = None) -> grain.MapDataset:
  """Every (image, caption) pair once, image-major, in host-local batches: the
  first `words_num` words, the centre crop, no flip. The last global batch is
  filled with rows marked `valid == False`."""
  p, n = _process(process_index, process_count)
  total = len(source) * source.captions_per_image
  padded = -(-total // batch_size) * batch_size
  rows = _HostRows(grain.MapDataset.range(padded), batch_size, p, n)
  return rows.map(_Examples(source, sizes, words_num, 0, train=False)).batch(
      batch_size // n, drop_remainder=True)


def from_config(config, split: str = "train", *, train: bool = True,
                process_index: int | None = None, process_count: int | None = None):
  """(source, dataset of host-local batches) for `split` of config.dataset, at
  the config's stage sizes, batch size and caption length."""
  sizes = stage_sizes(config)
  source = sources.make_source(config, split, max(sizes), sizes)
  if len(source.vocab) != config.text.vocab_size:
    raise VocabularyError(
        f"config.text.vocab_size is {config.text.vocab_size} but the {config.dataset} "
        f"vocabulary has {len(source.vocab)} words; set --config.text.vocab_size="
        f"{len(source.vocab)} (and use text encoder weights of that size)")
  kwargs = dict(batch_size=config.batch_size, sizes=sizes, words_num=config.text.words_num,
                process_index=process_index, process_count=process_count)
  if train:
    return source, train_dataset(source, seed=config.seed,
                                 near_misses=config.data.get("near_misses", False),
                                 colour_twins=config.data.get("colour_twins", False),
                                 twin_every=config.gan.get("twin_every", 2), **kwargs)
  return source, eval_dataset(source, **kwargs)


def iterator(dataset: grain.MapDataset, workers: int = 0, prefetch: int = 2):
  """A checkpointable iterator (`get_state`, `set_state`) over `dataset`;
  `workers` > 0 prepares batches in that many processes (call from under an
  `if __name__ == '__main__':` guard). `prefetch` batches are read ahead by as
  many threads; 0 reads each batch in the calling thread when it is asked for:
  the same batches for half the host CPU time when examples are cheap (the
  shapes default's: 1.4 against 2.8 ms per batch, docs/benchmarks.md), which on
  a 2-core machine is time taken from XLA's threads."""
  ds = dataset.to_iter_dataset(grain.ReadOptions(num_threads=prefetch,
                                                 prefetch_buffer_size=prefetch))
  if workers > 0:
    # grain's worker processes read absl flags; outside absl.app.run (notebooks,
    # tests) nothing has parsed them, so take their defaults.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers,
                                                     per_worker_buffer_size=max(1, prefetch)))
  return iter(ds)


_to_model_range = jax.jit(lambda images: tuple(image_ops.to_model_range(x) for x in images))


def device_batch(mesh, host_batch: dict) -> dict:
  """Host-local batches of every process -> global arrays sharded over the
  mesh's 'data' axis, images as float32 in [-1, 1] (converted on the device:
  uint8 crosses the host-device link)."""
  batch = parallel.global_batch(mesh, host_batch)
  batch["images"] = _to_model_range(batch["images"])
  return batch

