"""Meaning-keeping noise on captions' function words, for DAMSM training
(`damsm.function_word_swap`, `_drop`, `_insert`; a deviation, shapes only, off in birds/coco).

The shapes captions come from a few templates, so a text encoder trained on
them alone reads a sentence in another phrasing ("the ... is to the left of",
"blue triangle , tiny , bottom") as something else: the default job's
`test_paraphrased` row (docs/shapes_default_job.md). Here each DAMSM caption
has words that name no attribute (articles, prepositions, "there is", "placed",
...) changed at random, in the jitted step, from the step's key: each such word
is replaced by a random one of them with probability `swap`, deleted with
probability `drop`, and before each word one is inserted with probability
`insert` while the caption has room. Words that name a colour, shape, size,
position or relation are never touched and keep their order, so the noised
caption says what the original says.
"""

import jax
import jax.numpy as jnp
import numpy as np

from mirrorgan_jax.data import shapes

def attribute_words() -> frozenset:
  """The shapes words that name an attribute (colour, size, shape, position,
  relation); "round shape" counts both its words."""
  named = [*shapes.COLORS, *shapes.INVERSE]  # INVERSE's keys: the relation words
  for table in (shapes.SIZE_WORDS, shapes.SHAPE_WORDS, shapes.POSITION_WORDS):
    named += [w for words in table.values() for phrase in words for w in phrase.split()]
  return frozenset(named)


def function_words(vocab_size: int) -> np.ndarray:
  """bool (vocab_size,): which ids of the shapes vocabulary are words that name
  no attribute (id 0 is padding, word i of `shapes.caption_words()` has id
  i + 1, as in `ShapesSource.vocab`)."""
  words = shapes.caption_words()
  if vocab_size != 1 + len(words):
    raise ValueError(f"text.vocab_size = {vocab_size}: the shapes vocabulary has "
                     f"{1 + len(words)} words with padding")
  named = attribute_words()
  return np.asarray([False] + [w not in named for w in words])


def noise(ids, lengths, key, function: np.ndarray, swap: float, drop: float, insert: float):
  """(ids (B, T), lengths (B,)) with the function words (`function`, a bool per
  id) noised as the module says; padding 0 after each new length, which never
  exceeds T."""
  b, t = ids.shape
  fids = jnp.asarray(np.flatnonzero(function), ids.dtype)
  k_swap, k_swap_to, k_drop, k_insert, k_new = jax.random.split(key, 5)
  valid = jnp.arange(t)[None] < lengths[:, None]
  is_function = valid & jnp.asarray(function)[ids]
  random_word = lambda k: fids[jax.random.randint(k, (b, t), 0, len(fids))]  # noqa: E731
  ids = jnp.where(is_function & (jax.random.uniform(k_swap, (b, t)) < swap),
                  random_word(k_swap_to), ids)
  keep = valid & ~(is_function & (jax.random.uniform(k_drop, (b, t)) < drop))
  room = t - keep.sum(1, keepdims=True)
  added = valid & (jax.random.uniform(k_insert, (b, t)) < insert)
  added &= jnp.cumsum(added, 1) <= room  # the first ones, while the caption has room
  # Slot 2i holds the word inserted before word i, slot 2i + 1 word i; the live
  # slots move to the front in order.
  slots = jnp.stack([random_word(k_new), ids], 2).reshape(b, 2 * t)
  live = jnp.stack([added, keep], 2).reshape(b, 2 * t)
  order = jnp.argsort(~live, axis=1, stable=True)[:, :t]
  new_lengths = live.sum(1)
  out = jnp.where(jnp.arange(t)[None] < new_lengths[:, None],
                  jnp.take_along_axis(slots, order, 1), 0)
  return out.astype(ids.dtype), new_lengths.astype(lengths.dtype)
