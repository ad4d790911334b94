import jax
import jax.numpy as jnp
import numpy as np

from mirrorgan_jax.models.text_encoder import TextEncoder, lstm_cell, padding_mask
from mirrorgan_jax.batch import random_captions

VOCAB, EMB, HID, T, B = 30, 8, 12, 7, 5
ENC = TextEncoder(VOCAB, EMB, HID)
CAPTIONS, LENGTHS = random_captions(np.random.default_rng(0), B, T, VOCAB)
LENGTHS[0], LENGTHS[1] = 1, T  # both extremes
CAPTIONS[0, 1:] = 0
CAPTIONS[1] = np.maximum(CAPTIONS[1], 1)
PARAMS = ENC.init(jax.random.key(0), CAPTIONS, LENGTHS)["params"]


def encode(captions, lengths, **kw):
  return ENC.apply({"params": PARAMS}, jnp.asarray(captions), jnp.asarray(lengths), **kw)


def test_padding_mask():
  np.testing.assert_array_equal(
      padding_mask(jnp.array([1, 3]), 4),
      [[False, True, True, True], [False, False, False, True]])


def test_padded_word_features_are_exactly_zero():
  words, _ = encode(CAPTIONS, LENGTHS)
  pad = np.asarray(padding_mask(jnp.asarray(LENGTHS), T))
  assert pad.any() and (~pad).any()
  assert np.all(np.asarray(words)[pad] == 0.0)
  assert np.all(np.abs(np.asarray(words)[~pad]).sum(-1) > 0)


def test_tokens_past_the_length_change_nothing():
  words, sentence = encode(CAPTIONS, LENGTHS)
  garbage = np.where(np.arange(T)[None] >= LENGTHS[:, None],
                     np.random.default_rng(1).integers(1, VOCAB, (B, T)), CAPTIONS)
  assert (garbage != CAPTIONS).any()
  words2, sentence2 = encode(garbage.astype(np.int32), LENGTHS)
  np.testing.assert_array_equal(words, words2)
  np.testing.assert_array_equal(sentence, sentence2)


def test_outputs_equal_a_plain_python_loop_over_the_lstm_cell():
  words, sentence = encode(CAPTIONS, LENGTHS)
  # The "states_mean" form from the same parameters (it adds none).
  _, mean_form = TextEncoder(VOCAB, EMB, HID, sentence_code="states_mean").apply(
      {"params": PARAMS}, jnp.asarray(CAPTIONS), jnp.asarray(LENGTHS))
  emb = np.asarray(PARAMS["embedding"]["embedding"])[CAPTIONS]
  cell = lstm_cell(HID // 2)
  step = lambda name, carry, x: cell.apply({"params": PARAMS[name]}, carry, x)  # noqa: E731
  for b in range(B):
    n = int(LENGTHS[b])
    zero = (jnp.zeros((HID // 2,)), jnp.zeros((HID // 2,)))
    carry, fwd = zero, []
    for t in range(n):
      carry, h = step("lstm_fwd", carry, emb[b, t])
      fwd.append(h)
    carry, bwd = zero, [None] * n
    for t in reversed(range(n)):
      carry, h = step("lstm_bwd", carry, emb[b, t])
      bwd[t] = h
    expected_sentence = np.concatenate([fwd[-1], bwd[0]])
    np.testing.assert_allclose(sentence[b], expected_sentence, rtol=1e-5, atol=1e-6)
    expected_words = np.concatenate([np.stack(fwd), np.stack(bwd)], axis=-1)
    np.testing.assert_allclose(words[b, :n], expected_words, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mean_form[b], (expected_sentence + expected_words.mean(0)) / 2,
                               rtol=1e-5, atol=1e-6)


def test_the_mean_form_ignores_tokens_past_the_length():
  enc = TextEncoder(VOCAB, EMB, HID, sentence_code="states_mean")
  garbage = np.where(np.arange(T)[None] >= LENGTHS[:, None],
                     np.random.default_rng(2).integers(1, VOCAB, (B, T)), CAPTIONS)
  a = enc.apply({"params": PARAMS}, jnp.asarray(CAPTIONS), jnp.asarray(LENGTHS))[1]
  b = enc.apply({"params": PARAMS}, jnp.asarray(garbage, jnp.int32), jnp.asarray(LENGTHS))[1]
  np.testing.assert_array_equal(a, b)


def test_dropout_only_in_training():
  a = encode(CAPTIONS, LENGTHS)
  b = encode(CAPTIONS, LENGTHS, deterministic=True)
  np.testing.assert_array_equal(a[1], b[1])
  c = encode(CAPTIONS, LENGTHS, deterministic=False, rngs={"dropout": jax.random.key(3)})
  assert not np.allclose(a[1], c[1])
