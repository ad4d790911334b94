"""AttnGAN's DAMSM matching losses (official losses.py: words_loss, sent_loss,
and func_attention in GlobalAttention.py), in float32.

The official code slices each caption to its length and loops over captions;
here every caption keeps its padded length T and padding is masked instead:
padded words are excluded from the softmax over words, from the sum over
words in the score, and are zero in the attention maps. Masked logits use a
large finite negative rather than -inf, so no row can become NaN.

Conventions: scores are (B_images, B_captions), element [j, i] for image j
and caption i (the official `similarities`); the loss targets the diagonal.
"""

import jax
import jax.numpy as jnp
import optax

# Finite, so nothing becomes NaN; exp() of it is exactly 0.
_MASK_VALUE = -1e30
# PyTorch cosine_similarity's clamp on the product of the norms.
_EPS = 1e-8
# Matching scores are compared across the batch (and reused for
# R-precision): keep the matmuls in full float32 on every backend.
_PRECISION = jax.lax.Precision.HIGHEST


def _norm(x: jax.Array) -> jax.Array:
  """L2 norm over the last axis whose gradient at 0 is 0 (as in PyTorch),
  not NaN: padded words are zero vectors."""
  sq = jnp.sum(x * x, axis=-1)
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def _cosine(x: jax.Array, y: jax.Array) -> jax.Array:
  """Cosine over the last axis, x.y / max(|x| |y|, eps) as the official code."""
  dot = jnp.sum(x * y, axis=-1)
  return dot / jnp.maximum(_norm(x) * _norm(y), _EPS)


def _valid(lengths: jax.Array, max_len: int) -> jax.Array:
  """(B, T) bool, True at a caption's real words."""
  return jnp.arange(max_len)[None, :] < jnp.asarray(lengths)[:, None]


def _pair_attention(regions: jax.Array, words: jax.Array, valid: jax.Array,
                    gamma1: float) -> jax.Array:
  """One image's regions (N, D) against one caption's words (T, D) ->
  attention (T, N) over regions per word (func_attention's two softmaxes)."""
  logits = jnp.einsum("nd,td->nt", regions, words, precision=_PRECISION)
  logits = jnp.where(valid[None, :], logits, _MASK_VALUE)
  over_words = jax.nn.softmax(logits, axis=-1)  # Eq. (8): per region
  return jax.nn.softmax(gamma1 * over_words.T, axis=-1)  # Eq. (9): per word


def _pair_score(regions: jax.Array, words: jax.Array, valid: jax.Array,
                gamma1: float, gamma2: float) -> jax.Array:
  """Eq. (10): log sum_t exp(gamma2 * cos(c_t, e_t)) over the real words."""
  attn = _pair_attention(regions, words, valid, gamma1)
  context = jnp.einsum("tn,nd->td", attn, regions, precision=_PRECISION)
  relevance = gamma2 * _cosine(context, words)
  return jax.nn.logsumexp(jnp.where(valid, relevance, _MASK_VALUE))


def _prepare(regions, words, lengths):
  """Flatten regions to (B, N, D), zero padded words (so their content can
  never matter) and return the valid-word mask."""
  regions = jnp.asarray(regions, jnp.float32)
  regions = regions.reshape(regions.shape[0], -1, regions.shape[-1])
  words = jnp.asarray(words, jnp.float32)
  valid = _valid(lengths, words.shape[1])
  return regions, jnp.where(valid[..., None], words, 0.0), valid


def word_scores(regions: jax.Array, words: jax.Array, lengths: jax.Array,
                gamma1: float, gamma2: float) -> jax.Array:
  """regions (Bi, H, W, D), words (Bc, T, D), lengths (Bc,) -> (Bi, Bc)
  word-level scores before gamma3, [j, i] for image j and caption i."""
  regions, words, valid = _prepare(regions, words, lengths)
  per_caption = jax.vmap(_pair_score, in_axes=(None, 0, 0, None, None))
  per_image = jax.vmap(per_caption, in_axes=(0, None, None, None, None))
  return per_image(regions, words, valid, gamma1, gamma2)


def word_attention(regions: jax.Array, words: jax.Array, lengths: jax.Array,
                   gamma1: float) -> jax.Array:
  """Each caption's attention over its own image's regions (the official
  att_maps, for visualisation): (B, T, H, W), zero for padded words."""
  b, h, w, _ = regions.shape
  regions, words, valid = _prepare(regions, words, lengths)
  attn = jax.vmap(_pair_attention, in_axes=(0, 0, 0, None))(
      regions, words, valid, gamma1)
  attn = jnp.where(valid[..., None], attn, 0.0)
  return attn.reshape(b, words.shape[1], h, w)


def sentence_scores(code: jax.Array, sentence: jax.Array) -> jax.Array:
  """code (Bi, D), sentence (Bc, D) -> (Bi, Bc) cosine similarities."""
  code = jnp.asarray(code, jnp.float32)
  sentence = jnp.asarray(sentence, jnp.float32)
  dots = jnp.einsum("id,cd->ic", code, sentence, precision=_PRECISION)
  norms = _norm(code)[:, None] * _norm(sentence)[None, :]
  return dots / jnp.maximum(norms, _EPS)


def same_class_mask(class_ids: jax.Array) -> jax.Array:
  """(B, B) bool, True for off-diagonal pairs of the same class: those are
  not wrong matches, so the official code drops them from the softmax."""
  class_ids = jnp.asarray(class_ids)
  same = class_ids[:, None] == class_ids[None, :]
  return same & ~jnp.eye(class_ids.shape[0], dtype=bool)


def matching_losses(scores: jax.Array,
                    mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Cross-entropy towards the diagonal, batch mean, over rows (loss0) and
  over columns (loss1). `scores` already include gamma3."""
  scores = jnp.where(mask, _MASK_VALUE, jnp.asarray(scores, jnp.float32))
  labels = jnp.arange(scores.shape[0])
  loss0 = optax.softmax_cross_entropy_with_integer_labels(scores, labels).mean()
  loss1 = optax.softmax_cross_entropy_with_integer_labels(scores.T, labels).mean()
  return loss0, loss1


def damsm_losses(regions: jax.Array, code: jax.Array, words: jax.Array,
                 sentence: jax.Array, lengths: jax.Array, class_ids: jax.Array,
                 gamma1: float, gamma2: float, gamma3: float) -> dict:
  """Word and sentence matching losses and their unweighted sum."""
  mask = same_class_mask(class_ids)
  w_loss0, w_loss1 = matching_losses(
      gamma3 * word_scores(regions, words, lengths, gamma1, gamma2), mask)
  s_loss0, s_loss1 = matching_losses(
      gamma3 * sentence_scores(code, sentence), mask)
  return {"w_loss0": w_loss0, "w_loss1": w_loss1,
          "s_loss0": s_loss0, "s_loss1": s_loss1,
          "loss": w_loss0 + w_loss1 + s_loss0 + s_loss1}
