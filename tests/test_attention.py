import jax
import jax.numpy as jnp
import numpy as np

from mirrorgan_jax.models.attention import (GlobalLocalAttention, low_precision_logits,
                                           word_attention_weights)
from mirrorgan_jax.models.text_encoder import padding_mask

B, H, W, IDF, NEF, COND, T = 6, 4, 5, 8, 12, 10, 7
RNG = np.random.default_rng(0)
LENGTHS = jnp.array([1, 7, 3, 5, 2, 6])
MASK = padding_mask(LENGTHS, T)
h = jnp.asarray(RNG.normal(size=(B, H, W, IDF)), jnp.float32)
c = jnp.asarray(RNG.normal(size=(B, COND)), jnp.float32)
words = jnp.asarray(RNG.normal(size=(B, T, NEF)), jnp.float32)
ATT = GlobalLocalAttention(IDF)
VARS = ATT.init(jax.random.key(0), h, c, words, MASK)
WORD_CTX, SENT_CTX, WORD_ATT, SENT_ATT = ATT.apply(VARS, h, c, words, MASK)


def test_padding_words_get_exactly_zero_weight_at_every_pixel():
  att = np.asarray(WORD_ATT)  # (B, T, H, W)
  assert att.shape == (B, T, H, W)
  for b, n in enumerate(np.asarray(LENGTHS)):
    assert np.all(att[b, n:] == 0.0), f"caption {b} (length {n}) sees padding"
    assert np.all(att[b, :n] > 0.0), f"caption {b} (length {n}) hides a real word"


def test_word_weights_sum_to_one_over_words():
  np.testing.assert_allclose(np.asarray(WORD_ATT).sum(axis=1), 1.0, rtol=1e-6)


def test_sentence_weights_sum_to_one_over_channels():
  assert SENT_ATT.shape == (B, H, W, IDF)
  np.testing.assert_allclose(np.asarray(SENT_ATT).sum(axis=-1), 1.0, rtol=1e-6)


def test_contexts_equal_a_hand_computation():
  p = jax.tree.map(np.asarray, VARS["params"])
  ctx = np.asarray(words) @ p["conv_context"]["kernel"]  # (B, T, IDF)
  pix = np.asarray(h).reshape(B, H * W, IDF)
  logits = np.einsum("bnc,btc->bnt", pix, ctx)
  logits = np.where(np.asarray(MASK)[:, None, :], -np.inf, logits)
  alpha = np.exp(logits - logits.max(-1, keepdims=True))
  alpha /= alpha.sum(-1, keepdims=True)
  expected_word = np.einsum("bnt,btc->bnc", alpha, ctx).reshape(B, H, W, IDF)
  np.testing.assert_allclose(WORD_CTX, expected_word, rtol=1e-4, atol=1e-5)

  s = np.asarray(c) @ p["linear"]["kernel"] + p["linear"]["bias"]
  g = (np.asarray(h) * s[:, None, None, :]) @ p["conv_sentence_vis"]["kernel"][0, 0]
  beta = np.exp(g - g.max(-1, keepdims=True))
  beta /= beta.sum(-1, keepdims=True)
  np.testing.assert_allclose(SENT_CTX, s[:, None, None, :] * beta, rtol=1e-4, atol=1e-5)


def test_a_fully_masked_row_stays_finite():
  w = word_attention_weights(jnp.ones((1, 3, 2)), jnp.ones((1, 4, 2)),
                             jnp.ones((1, 4), bool))
  assert np.all(np.isfinite(w))


def test_bf16_logits_accumulate_in_float32_and_differentiate_in_bf16():
  """The word-attention logits of bf16 operands: the float32-accumulated
  forward of the plain einsum, and a backward whose two matmuls take bf16
  operands (plain autodiff would upcast them to float32), with gradients
  close to the float32 ones."""
  pix = jnp.asarray(RNG.normal(size=(2, 5, 4)), jnp.bfloat16)
  ctx = jnp.asarray(RNG.normal(size=(2, 3, 4)), jnp.bfloat16)
  cot = jnp.asarray(RNG.normal(size=(2, 5, 3)), jnp.float32)
  plain = lambda p, c: jnp.einsum("bnc,btc->bnt", p, c,  # noqa: E731
                                  preferred_element_type=jnp.float32)
  logits, vjp = jax.vjp(low_precision_logits, pix, ctx)
  assert logits.dtype == jnp.float32
  np.testing.assert_array_equal(logits, plain(pix, ctx))
  g_pix, g_ctx = vjp(cot)
  assert g_pix.dtype == g_ctx.dtype == jnp.bfloat16
  want = jax.vjp(plain, pix.astype(jnp.float32), ctx.astype(jnp.float32))[1](cot)
  for got, ref in zip((g_pix, g_ctx), want):
    np.testing.assert_allclose(np.asarray(got, np.float32), ref, rtol=3e-2, atol=3e-2)
  backward = jax.make_jaxpr(lambda p, c, g: jax.vjp(low_precision_logits, p, c)[1](g))(
      pix, ctx, cot)
  dots = [e for e in backward.eqns if e.primitive.name == "dot_general"]
  assert len(dots) == 3  # forward + two gradients
  assert all(v.aval.dtype == jnp.bfloat16 for e in dots for v in e.invars)


def test_float32_word_attention_is_plain_autodiff():
  """float32 operands skip the custom gradient: the float32 program is as before."""
  pix, ctx = h.reshape(B, H * W, IDF), jnp.ones((B, T, IDF))
  jaxpr = lambda dtype: str(jax.make_jaxpr(word_attention_weights)(  # noqa: E731
      pix.astype(dtype), ctx.astype(dtype), MASK))
  assert "custom_vjp_call" not in jaxpr(jnp.float32)
  assert "custom_vjp_call" in jaxpr(jnp.bfloat16)
