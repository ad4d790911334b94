"""Shared test utilities: parameter counting and synthetic batches."""

import numpy as np

from mirrorgan_jax.config_check import stage_sizes


def count_params(tree) -> int:
  import jax
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def random_captions(rng: np.random.Generator, batch: int, words: int, vocab: int,
                    min_len: int = 1):
  """Mixed-length captions: ids in [1, vocab) up to the length, 0 after."""
  lengths = rng.integers(min_len, words + 1, batch).astype(np.int32)
  ids = rng.integers(1, vocab, (batch, words))
  captions = np.where(np.arange(words)[None] < lengths[:, None], ids, 0)
  return captions.astype(np.int32), lengths


def synthetic_batch(config, seed: int = 0, wrong: bool = True) -> dict:
  """A batch in the train step's format, images in [-1, 1] at every stage."""
  rng = np.random.default_rng(seed)
  b, t, v = config.batch_size, config.text.words_num, config.text.vocab_size
  captions, lengths = random_captions(rng, b, t, v)
  batch = {
      "images": tuple(rng.uniform(-1, 1, (b, s, s, 3)).astype(np.float32)
                      for s in stage_sizes(config)),
      "captions": captions,
      "caption_lens": lengths,
  }
  if wrong:
    batch["wrong_captions"], batch["wrong_caption_lens"] = random_captions(rng, b, t, v)
  return batch
