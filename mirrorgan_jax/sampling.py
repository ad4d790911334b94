"""Images from captions with a trained generator: the EMA parameters and the
live BatchNorm running statistics (as the official sampler), conditioning
augmentation still sampling its noise (official; reference section 15.14)."""

from typing import Callable

import jax
import jax.numpy as jnp

from mirrorgan_jax.factory import Models
from mirrorgan_jax.gan_step import encode_text
from mirrorgan_jax.gan_state import GANState
from mirrorgan_jax.models.text_encoder import padding_mask


def make_sampler(models: Models, config) -> Callable:
  """`sample(state, captions, lengths, key) -> (images, attention)`: images a
  tuple with one float32 (B, S, S, 3) array in [-1, 1] per stage, attention a
  tuple with one (B, T, S, S) word-attention map per refinement stage."""
  z_dim = config.model.z_dim

  def sample(state: GANState, captions, lengths, key):
    z_key, noise_key = jax.random.split(key)
    words, sentence = encode_text(models, state.text_encoder, captions, lengths)
    z = jax.random.normal(z_key, (captions.shape[0], z_dim))
    images, attention, _, _ = models.generator.apply(
        {"params": state.g_ema, "batch_stats": state.g.batch_stats}, z, sentence, words,
        padding_mask(lengths, captions.shape[1]), train=False, rngs={"noise": noise_key})
    return tuple(jnp.asarray(x, jnp.float32) for x in images), attention

  return sample
