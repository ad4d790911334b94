"""GLAM: MirrorGAN's global-local attention (the official GLAttentionGeneral).

Word level: e' = 1x1 conv(words) (nef -> idf); for every pixel p the logits
h_p . e'_t over words t, padded words masked out, softmax over words, context
sum_t alpha_pt e'_t.

Deviation (deliberate): the official code tiles the (B, T) padding mask in the
wrong order (AttnGAN#93), so most pixels receive another caption's mask. We
broadcast each caption's mask over its own pixels.

Sentence level: s' = Linear(c) (condition_dim -> idf), g = 1x1 conv(h * s'),
beta = softmax of g over the CHANNEL axis (the official code's implicit
`dim=1`), context s' * beta.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mirrorgan_jax.models.layers import conv, orthogonal

Dtype = Any

# Finite, so a fully masked row cannot become NaN; exp() of it is exactly 0.
_MASK_VALUE = -1e30


def _f32_logits(pixels, context):
  return jnp.einsum("bnc,btc->bnt", pixels, context, preferred_element_type=jnp.float32)


@jax.custom_vjp
def low_precision_logits(pixels: jax.Array, context: jax.Array) -> jax.Array:
  """`_f32_logits` of low-precision (bf16) operands, whose backward pass also
  runs in the operands' precision. Autodiff of a dot with float32 output would
  take the float32 cotangent and upcast the other operand: both gradient
  matmuls would run in float32. Here the cotangent is rounded to the operands'
  dtype first, as every other activation gradient of a bf16 network is, and
  the matmuls accumulate in float32 (preferred_element_type)."""
  return _f32_logits(pixels, context)


def _low_precision_logits_fwd(pixels, context):
  return _f32_logits(pixels, context), (pixels, context)


def _low_precision_logits_bwd(residuals, g):
  pixels, context = residuals
  g_pixels = jnp.einsum("bnt,btc->bnc", g.astype(context.dtype), context,
                        preferred_element_type=jnp.float32)
  g_context = jnp.einsum("bnt,bnc->btc", g.astype(pixels.dtype), pixels,
                         preferred_element_type=jnp.float32)
  return g_pixels.astype(pixels.dtype), g_context.astype(context.dtype)


low_precision_logits.defvjp(_low_precision_logits_fwd, _low_precision_logits_bwd)


def word_attention_weights(pixels: jax.Array, context: jax.Array,
                           mask: jax.Array) -> jax.Array:
  """pixels (B, N, C), context (B, T, C), mask (B, T) True at padding ->
  attention weights (B, N, T) in float32, rows summing to 1 over words.
  The logits matmul accumulates in float32 whatever the operands' dtype; with
  low-precision operands its gradient matmuls run in that precision too."""
  if pixels.dtype == jnp.float32 and context.dtype == jnp.float32:
    logits = _f32_logits(pixels, context)  # plain autodiff: the float32 program as it was
  else:
    logits = low_precision_logits(pixels, context)
  logits = jnp.where(mask[:, None, :], _MASK_VALUE, logits)
  return jax.nn.softmax(logits, axis=-1)


class GlobalLocalAttention(nn.Module):
  """h (B,H,W,idf), c (B,cond), words (B,T,nef), mask (B,T) ->
  word context, sentence context (both (B,H,W,idf)), word attention (B,T,H,W),
  sentence attention (B,H,W,idf)."""
  idf: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, h, c, words, mask):
    b, height, width, _ = h.shape
    context = nn.Dense(self.idf, use_bias=False, dtype=self.dtype,
                       kernel_init=orthogonal, name="conv_context")(words)
    alpha = word_attention_weights(h.reshape(b, height * width, -1), context, mask)
    word_ctx = jnp.einsum("bnt,btc->bnc", alpha.astype(self.dtype), context)
    word_ctx = word_ctx.reshape(b, height, width, self.idf)

    s = nn.Dense(self.idf, dtype=self.dtype, kernel_init=orthogonal,
                 name="linear")(c)[:, None, None, :]
    g = conv(self.idf, 1, dtype=self.dtype, name="conv_sentence_vis")(h * s)
    beta = jax.nn.softmax(g.astype(jnp.float32), axis=-1)
    sent_ctx = s * beta.astype(self.dtype)
    word_att = jnp.moveaxis(alpha.reshape(b, height, width, -1), -1, 1)
    return word_ctx, sent_ctx, word_att, beta
