"""MirrorGAN's losses (reference section 8), all computed in float32.

Binary cross-entropies are computed from logits (PyTorch's BCELoss on sigmoid
outputs clamps log at -100; the logit form is exact and stable).
"""

import jax
import jax.numpy as jnp
import optax


def bce(logits: jax.Array, label: float) -> jax.Array:
  """Batch mean of the binary cross-entropy of `logits` against a constant label."""
  logits = logits.astype(jnp.float32)
  return optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label)).mean()


def discriminator_loss(logits: dict, negative_weight: float = 0.0) -> tuple[jax.Array, dict]:
  """(real + real|s) / 2 + (fake + fake|s + real|wrong s) / 3, for one stage;
  where `logits` has the negative batch's, plus `negative_weight` times
  (negative + negative|s) / 2, each against the fake label.

  `logits` is Discriminator.discriminate's dict."""
  terms = {
      "real": bce(logits["real"], 1.0),
      "cond_real": bce(logits["cond_real"], 1.0),
      "fake": bce(logits["fake"], 0.0),
      "cond_fake": bce(logits["cond_fake"], 0.0),
      "cond_wrong": bce(logits["cond_wrong"], 0.0),
  }
  loss = ((terms["real"] + terms["cond_real"]) / 2.0
          + (terms["fake"] + terms["cond_fake"] + terms["cond_wrong"]) / 3.0)
  if "negative" in logits:
    terms["negative"] = (bce(logits["negative"], 0.0) + bce(logits["cond_negative"], 0.0)) / 2.0
    loss = loss + negative_weight * terms["negative"]
  return loss, terms


def generator_adversarial_loss(uncond_logits: jax.Array,
                               cond_logits: jax.Array) -> jax.Array:
  """Non-saturating: BCE(D(fake), 1) + BCE(D(fake, s), 1), weight 1 each."""
  return bce(uncond_logits, 1.0) + bce(cond_logits, 1.0)


def kl_loss(mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mu, sigma) || N(0, I)), averaged over the batch and the dimensions."""
  mu, logvar = mu.astype(jnp.float32), logvar.astype(jnp.float32)
  return -0.5 * jnp.mean(1.0 + logvar - mu**2 - jnp.exp(logvar))


def colour_twin_loss(coverages, every: int) -> jax.Array:
  """Colour twins (a deviation, shapes only): the last row of every `every` of
  a batch is the row before it in other colours, drawn from the same noise, so
  every outline, and with it each image head's coverage, should be the same.
  The squared difference of the twins' coverages, averaged over pairs, pixels
  and sub-pixels, summed over the stages. coverages: one (B, H, W, S) per stage."""
  f32 = lambda x: x.astype(jnp.float32)  # noqa: E731
  return sum(jnp.mean((f32(c[every - 1::every]) - f32(c[every - 2::every]))**2)
             for c in coverages)


def caption_loss(logits: jax.Array, captions: jax.Array,
                 lengths: jax.Array) -> jax.Array:
  """Token cross-entropy averaged over the valid tokens of the whole batch
  (PyTorch's packed-sequence CE). logits (B, T, V), captions (B, T)."""
  valid = jnp.arange(captions.shape[1])[None, :] < lengths[:, None]
  ce = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), captions)
  return jnp.sum(ce * valid) / jnp.maximum(jnp.sum(valid), 1)
