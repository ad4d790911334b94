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


def word_attention_weights(pixels: jax.Array, context: jax.Array,
                           mask: jax.Array) -> jax.Array:
  """pixels (B, N, C), context (B, T, C), mask (B, T) True at padding ->
  attention weights (B, N, T) in float32, rows summing to 1 over words."""
  logits = jnp.einsum("bnc,btc->bnt", pixels, context,
                      preferred_element_type=jnp.float32)
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
