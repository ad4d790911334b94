"""The training batch: the contract between the input pipeline and the step.

  images               tuple, one float32 (B, S, S, 3) array per stage, in [-1, 1]
  captions             int32 (B, T): word ids, 0 after the caption's length
  caption_lens         int32 (B,): true lengths, 1..T
  wrong_captions       int32 (B, T), optional: a caption of another image, for
  wrong_caption_lens   the mismatched-pair term of the D loss

  class_ids            int32 (B,), optional: read only with `loss.damsm_weight`,
                       whose matching losses (as DAMSM's) do not count an image
                       of the same class as a wrong match; without them every
                       image is its own class

The input pipeline (data/pipeline.py) yields images as uint8 on the host;
`pipeline.device_batch` converts them on the device. Its batches also carry
`indices` and `wrong_indices`, which the step ignores.

`random_batch` fills it with random values for tests and benchmarks.
"""

import numpy as np

from mirrorgan_jax.config_check import stage_sizes


def random_captions(rng: np.random.Generator, batch: int, words: int, vocab: int,
                    min_len: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """Captions of mixed lengths in [min_len, words]: ids in [1, vocab), then 0."""
  lengths = rng.integers(min_len, words + 1, batch).astype(np.int32)
  ids = rng.integers(1, vocab, (batch, words))
  captions = np.where(np.arange(words)[None] < lengths[:, None], ids, 0)
  return captions.astype(np.int32), lengths


def random_batch(config, seed: int = 0, wrong: bool = True) -> dict:
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
  # drawn last, so that the draws above stay what they were; some repeat
  batch["class_ids"] = rng.integers(0, max(b // 2, 1), b).astype(np.int32)
  return batch
