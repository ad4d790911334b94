"""DAMSM losses against a numpy transcription of the official AttnGAN loop
(words_loss / sent_loss / func_attention: slice each caption to its length,
explicit softmaxes, -inf masks), in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mirrorgan_jax import damsm

B, T, H, W, D = 5, 7, 3, 3, 8
G1, G2, G3 = 4.0, 5.0, 10.0
RNG = np.random.default_rng(0)
LENGTHS = np.array([7, 3, 1, 5, 2], np.int32)
CLASS_IDS = np.array([1, 1, 2, 3, 1], np.int32)
VALID = np.arange(T)[None, :] < LENGTHS[:, None]
REGIONS = RNG.normal(size=(B, H, W, D)).astype(np.float32)
CODE = RNG.normal(size=(B, D)).astype(np.float32)
WORDS = (RNG.normal(size=(B, T, D)) * VALID[..., None]).astype(np.float32)
SENTENCE = RNG.normal(size=(B, D)).astype(np.float32)


# ----- numpy reference, following the official code literally ---------------

def np_softmax(x):  # nn.Softmax() on a 2-D tensor: over dim 1
  e = np.exp(x - x.max(axis=1, keepdims=True))
  return e / e.sum(axis=1, keepdims=True)


def np_cosine(x1, x2, eps=1e-8):  # losses.cosine_similarity, dim=1
  w12 = np.sum(x1 * x2, 1)
  return w12 / np.maximum(np.linalg.norm(x1, axis=1) * np.linalg.norm(x2, axis=1), eps)


def np_func_attention(query, context, gamma1):
  """query (b, ndf, queryL), context (b, ndf, ih, iw)."""
  b, query_len = query.shape[0], query.shape[2]
  ih, iw = context.shape[2], context.shape[3]
  source_len = ih * iw
  context = context.reshape(b, -1, source_len)
  context_t = context.transpose(0, 2, 1)
  attn = context_t @ query  # b x sourceL x queryL
  attn = np_softmax(attn.reshape(b * source_len, query_len))
  attn = attn.reshape(b, source_len, query_len).transpose(0, 2, 1)
  attn = np_softmax(attn.reshape(b * query_len, source_len) * gamma1)
  attn = attn.reshape(b, query_len, source_len)
  weighted = context @ attn.transpose(0, 2, 1)  # b x ndf x queryL
  return weighted, attn.reshape(b, -1, ih, iw)


def np_word_similarities(regions, words, lengths, gamma1, gamma2):
  """(Bi, Bc) before gamma3, plus the official att_maps (square case)."""
  img = np.asarray(regions, np.float64).transpose(0, 3, 1, 2)  # NCHW
  words = np.asarray(words, np.float64).transpose(0, 2, 1)  # b x nef x T
  n_img = img.shape[0]
  columns, att_maps = [], []
  for i in range(words.shape[0]):
    n = int(lengths[i])
    word = np.repeat(words[i:i + 1, :, :n], n_img, axis=0)
    wei_context, attn = np_func_attention(word, img, gamma1)
    if i < n_img:
      att_maps.append(attn[i])
    word = word.transpose(0, 2, 1).reshape(n_img * n, -1)
    wei_context = wei_context.transpose(0, 2, 1).reshape(n_img * n, -1)
    row_sim = np_cosine(word, wei_context).reshape(n_img, n)
    row_sim = np.log(np.exp(row_sim * gamma2).sum(axis=1, keepdims=True))
    columns.append(row_sim)
  return np.concatenate(columns, 1), att_maps


def np_masks(class_ids):
  masks = []
  for i in range(len(class_ids)):
    mask = (class_ids == class_ids[i]).astype(np.uint8)
    mask[i] = 0
    masks.append(mask.reshape((1, -1)))
  return np.concatenate(masks, 0).astype(bool)


def np_cross_entropy(logits):
  m = logits.max(axis=1, keepdims=True)
  logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
  return -np.mean(np.diag(logp))


def np_sentence_scores(cnn_code, rnn_code, eps=1e-8):
  cnn_code, rnn_code = np.asarray(cnn_code, np.float64), np.asarray(rnn_code, np.float64)
  norm0 = np.linalg.norm(cnn_code, axis=1)[:, None] * np.linalg.norm(rnn_code, axis=1)[None, :]
  return cnn_code @ rnn_code.T / np.maximum(norm0, eps)


def np_damsm(regions, code, words, sentence, lengths, class_ids):
  masks = np_masks(class_ids)
  sims = np_word_similarities(regions, words, lengths, G1, G2)[0] * G3
  sims[masks] = -np.inf
  scores = np_sentence_scores(code, sentence) * G3
  scores[masks] = -np.inf
  return {"w_loss0": np_cross_entropy(sims), "w_loss1": np_cross_entropy(sims.T),
          "s_loss0": np_cross_entropy(scores), "s_loss1": np_cross_entropy(scores.T)}


# ----- tests ----------------------------------------------------------------

def test_word_scores_match_the_official_loop():
  got = damsm.word_scores(REGIONS, WORDS, LENGTHS, G1, G2)
  expected, _ = np_word_similarities(REGIONS, WORDS, LENGTHS, G1, G2)
  assert got.shape == (B, B)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_word_scores_with_fewer_images_than_captions():
  got = damsm.word_scores(REGIONS[:2], WORDS, LENGTHS, G1, G2)
  expected, _ = np_word_similarities(REGIONS[:2], WORDS, LENGTHS, G1, G2)
  assert got.shape == (2, B)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_word_attention_matches_the_official_att_maps():
  got = np.asarray(damsm.word_attention(REGIONS, WORDS, LENGTHS, G1))
  _, att_maps = np_word_similarities(REGIONS, WORDS, LENGTHS, G1, G2)
  assert got.shape == (B, T, H, W)
  for i, n in enumerate(LENGTHS):
    np.testing.assert_allclose(got[i, :n], att_maps[i], rtol=1e-5, atol=1e-6)
    assert np.all(got[i, n:] == 0.0), f"caption {i} has attention on padding"


def test_word_features_past_a_caption_length_change_nothing():
  garbage = RNG.normal(size=WORDS.shape).astype(np.float32) * 100.0
  words2 = np.where(VALID[..., None], WORDS, garbage)
  for fn in (lambda w: damsm.word_scores(REGIONS, w, LENGTHS, G1, G2),
             lambda w: damsm.word_attention(REGIONS, w, LENGTHS, G1),
             lambda w: damsm.damsm_losses(REGIONS, CODE, w, SENTENCE, LENGTHS,
                                          CLASS_IDS, G1, G2, G3)["loss"]):
    np.testing.assert_array_equal(fn(words2), fn(WORDS))


def test_sentence_scores_are_eps_clamped_cosines():
  got = damsm.sentence_scores(CODE[:3], SENTENCE)
  assert got.shape == (3, B)
  np.testing.assert_allclose(got, np_sentence_scores(CODE[:3], SENTENCE),
                             rtol=1e-5, atol=1e-6)
  # A zero vector gives 0 (the clamp), not NaN.
  zero = damsm.sentence_scores(np.zeros((1, D), np.float32), SENTENCE)
  np.testing.assert_array_equal(zero, 0.0)
  # Tiny vectors: |x||y| = 1e-10 is clamped up to 1e-8, so cos(x, x) = 0.01.
  tiny = np.eye(2, D, dtype=np.float32) * 1e-5
  np.testing.assert_allclose(damsm.sentence_scores(tiny, tiny),
                             np.eye(2) * 0.01, rtol=1e-4, atol=1e-9)


def test_same_class_mask_is_off_diagonal_same_class():
  expected = np.array([[0, 1, 0, 0, 1],
                       [1, 0, 0, 0, 1],
                       [0, 0, 0, 0, 0],
                       [0, 0, 0, 0, 0],
                       [1, 1, 0, 0, 0]], bool)
  np.testing.assert_array_equal(damsm.same_class_mask(CLASS_IDS), expected)
  np.testing.assert_array_equal(np_masks(CLASS_IDS), expected)


def test_damsm_losses_match_the_official_computation():
  got = damsm.damsm_losses(REGIONS, CODE, WORDS, SENTENCE, LENGTHS, CLASS_IDS,
                           G1, G2, G3)
  expected = np_damsm(REGIONS, CODE, WORDS, SENTENCE, LENGTHS, CLASS_IDS)
  for k, v in expected.items():
    assert float(got[k]) == pytest.approx(v, rel=1e-5, abs=1e-5), k
  assert float(got["loss"]) == pytest.approx(sum(expected.values()), rel=1e-5)


def test_masked_pairs_do_not_affect_the_loss():
  mask = np.asarray(damsm.same_class_mask(CLASS_IDS))
  scores = RNG.normal(size=(B, B)).astype(np.float32) * G3
  base = damsm.matching_losses(scores, mask)
  moved = np.where(mask, scores + 50.0, scores)
  np.testing.assert_array_equal(damsm.matching_losses(moved, mask), base)
  # An unmasked wrong pair does count, in both directions.
  unmasked = scores.copy()
  unmasked[2, 3] += 50.0
  changed = damsm.matching_losses(unmasked, mask)
  assert float(changed[0]) > float(base[0]) and float(changed[1]) > float(base[1])


def test_matched_sentences_give_near_zero_loss_and_random_ones_log_b():
  ids = np.arange(B, dtype=np.int32)
  basis = np.eye(B, 16, dtype=np.float32) * 3.0  # orthogonal, not unit norm
  s0, s1 = damsm.matching_losses(G3 * damsm.sentence_scores(basis, basis),
                                 damsm.same_class_mask(ids))
  # Each row: -log(e^10 / (e^10 + 4)) ~ 4 e^-10.
  assert float(s0) < 1e-3 and float(s1) < 1e-3
  rng = np.random.default_rng(1)
  code, sent = rng.normal(size=(2, B, 4096)).astype(np.float32)
  r0, r1 = damsm.matching_losses(G3 * damsm.sentence_scores(code, sent),
                                 damsm.same_class_mask(ids))
  assert float(r0) == pytest.approx(np.log(B), abs=0.15)
  assert float(r1) == pytest.approx(np.log(B), abs=0.15)


def test_jit_matches_eager():
  args = (REGIONS, CODE, WORDS, SENTENCE, LENGTHS, CLASS_IDS)
  eager = damsm.damsm_losses(*args, G1, G2, G3)
  jitted = jax.jit(damsm.damsm_losses)(*args, G1, G2, G3)
  for k in eager:
    assert float(jitted[k]) == pytest.approx(float(eager[k]), rel=1e-5), k


def test_gradients_are_finite_and_padding_gets_none():
  def loss(regions, code, words, sentence):
    return damsm.damsm_losses(regions, code, words, sentence, LENGTHS,
                              CLASS_IDS, G1, G2, G3)["loss"]
  # Even NaN padding must not leak into any gradient.
  nan_padded = np.where(VALID[..., None], WORDS, np.nan).astype(np.float32)
  grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(REGIONS, CODE, nan_padded, SENTENCE)
  for g in grads:
    assert np.all(np.isfinite(g))
    assert np.any(g != 0.0)
  g_words = np.asarray(grads[2])
  assert np.all(g_words[~VALID] == 0.0)
  assert np.all(np.abs(g_words[VALID]).sum(-1) > 0.0)


def test_a_zero_vector_has_a_finite_gradient():
  # PyTorch's norm has gradient 0 at 0; a plain sqrt would give NaN.
  code = np.concatenate([np.zeros((1, D), np.float32), CODE[1:]])
  g = jax.grad(lambda c: damsm.sentence_scores(c, SENTENCE).sum())(code)
  assert np.all(np.isfinite(g))
