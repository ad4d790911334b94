"""damsm.function_word_*: noise on DAMSM captions' function words that keeps
every attribute word, in order (mirrorgan_jax/caption_noise.py)."""

import jax
import numpy as np
import pytest

from mirrorgan_jax import caption_noise
from mirrorgan_jax.data import shapes
from mirrorgan_jax.data.sources import ShapesSource

WORDS_NUM = 14
# Written out by hand: the shapes words that name no colour, size, shape,
# position or relation.
FUNCTION_WORDS = {"a", "at", "colored", "image", "in", "is", "of", "on", "one", "part",
                  "picture", "placed", "shows", "sits", "that", "the", "there", "to"}


def _captions(count=400):
  source = ShapesSource("train", 16, count)
  ids = np.zeros((count, WORDS_NUM), np.int32)
  lens = np.zeros(count, np.int32)
  for i in range(count):
    c = source.caption_ids(i)[i % shapes.CAPTIONS_PER_IMAGE]
    ids[i, :len(c)], lens[i] = c, len(c)
  return source.vocab, ids, lens


def _words(vocab, row, n):
  return [vocab.words[int(i)] for i in row[:n]]


def test_function_words_are_the_words_that_name_no_attribute():
  vocab, _, _ = _captions(2)
  table = caption_noise.function_words(len(vocab))
  assert {vocab.words[i] for i in np.flatnonzero(table)} == FUNCTION_WORDS
  with pytest.raises(ValueError, match="vocab_size = 44"):
    caption_noise.function_words(44)


@pytest.mark.parametrize("rates", [(0.2, 0.2, 0.1), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0),
                                   (0.0, 0.0, 1.0), (0.0, 0.0, 0.0)])
def test_noise_keeps_every_attribute_word_in_order(rates):
  vocab, ids, lens = _captions()
  table = caption_noise.function_words(len(vocab))
  out, n = caption_noise.noise(ids, lens, jax.random.key(3), table, *rates)
  out, n = np.asarray(out), np.asarray(n)
  swap, drop, insert = rates
  changed = 0
  for row in range(len(ids)):
    before, after = _words(vocab, ids[row], lens[row]), _words(vocab, out[row], n[row])
    assert 1 <= n[row] <= WORDS_NUM and not out[row, n[row]:].any()
    assert [w for w in after if w not in FUNCTION_WORDS] == [
        w for w in before if w not in FUNCTION_WORDS]
    function_before = sum(w in FUNCTION_WORDS for w in before)
    if drop == 1.0:
      assert len(after) == len(before) - function_before
    if insert == 1.0:  # a word before each word while there is room
      assert len(after) == min(2 * len(before), WORDS_NUM)
    if swap == 1.0 or rates == (0.0, 0.0, 0.0):
      assert len(after) == len(before)
    if rates == (0.0, 0.0, 0.0):
      assert after == before
    changed += after != before
  if swap == 1.0:  # 18 function words: a swap keeps the word 1 time in 18
    assert changed > 0.9 * len(ids)


def test_noise_rates_are_the_configured_ones():
  vocab, ids, lens = _captions()
  table = caption_noise.function_words(len(vocab))
  function = table[ids] & (np.arange(WORDS_NUM)[None] < lens[:, None])
  _, n = caption_noise.noise(ids, lens, jax.random.key(0), table, 0.0, 0.3, 0.0)
  dropped = (lens - np.asarray(n)).sum() / function.sum()
  assert dropped == pytest.approx(0.3, abs=0.03)
  _, n = caption_noise.noise(ids, lens, jax.random.key(0), table, 0.0, 0.0, 0.1)
  assert (np.asarray(n) - lens).sum() / lens.sum() == pytest.approx(0.1, abs=0.02)


def test_the_damsm_step_trains_on_the_noised_captions():
  """With damsm.function_word_* set, a step equals the official step on the
  captions `noise` makes from the step's key (fold_in(fold_in(key, step), 1))."""
  from configs import tiny
  from mirrorgan_jax import factory, pretrain_steps
  from mirrorgan_jax.batch import random_batch
  c = tiny.get_config()
  c.text.dropout = 0.0
  noised = tiny.get_config()
  noised.text.dropout = 0.0
  noised.damsm.function_word_swap, noised.damsm.function_word_drop = 0.5, 0.5
  noised.damsm.function_word_insert = 0.3
  models = factory.create_models(c)
  batch = random_batch(c)
  batch["class_ids"] = np.arange(c.batch_size, dtype=np.int32) % 3
  key = jax.random.key(0)
  state = pretrain_steps.init_damsm_state(models, c, key)
  got, _ = jax.jit(pretrain_steps.make_damsm_step(models, noised))(state, batch, key)
  table = caption_noise.function_words(c.text.vocab_size)
  captions, lens = caption_noise.noise(
      batch["captions"], batch["caption_lens"],
      jax.random.fold_in(jax.random.fold_in(key, 0), 1), table, 0.5, 0.5, 0.3)
  assert (np.asarray(captions) != batch["captions"]).any()
  want, _ = jax.jit(pretrain_steps.make_damsm_step(models, c))(
      state, {**batch, "captions": captions, "caption_lens": lens}, key)
  plain, _ = jax.jit(pretrain_steps.make_damsm_step(models, c))(state, batch, key)
  jax.tree.map(np.testing.assert_array_equal, got.text.params, want.text.params)
  assert any((np.asarray(a) != np.asarray(b)).any() for a, b in zip(
      jax.tree.leaves(got.text.params), jax.tree.leaves(plain.text.params)))
