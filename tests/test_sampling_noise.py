"""`gan.sample_z_scale` and `gan.sample_ca_noise`: the sampler's noise scaled
down (training keeps the full noise)."""

import jax
import numpy as np

from configs import tiny
from mirrorgan_jax import factory, gan_state
from mirrorgan_jax.gan_step import encode_text
from mirrorgan_jax.models.generator import ConditioningAugmentation
from mirrorgan_jax.models.text_encoder import padding_mask
from mirrorgan_jax.sampling import example_keys, make_sampler, sampling_params


def test_conditioning_noise_scale_gives_the_mean_at_zero_and_a_share_of_the_noise():
  ca = ConditioningAugmentation(condition_dim=6)
  sentence = jax.random.normal(jax.random.key(1), (4, 10))
  variables = ca.init({"params": jax.random.key(2), "noise": jax.random.key(3)}, sentence)
  rngs = {"noise": jax.random.key(4)}
  full, mu, logvar = ca.apply(variables, sentence, rngs=rngs)
  zero, mu0, _ = ca.apply(variables, sentence, 0.0, rngs=rngs)
  half, _, _ = ca.apply(variables, sentence, 0.5, rngs=rngs)
  sigma = np.exp(0.5 * np.asarray(logvar))
  eps = (np.asarray(full) - np.asarray(mu)) / sigma  # the official draw, from the same stream
  np.testing.assert_array_equal(zero, mu0)
  np.testing.assert_array_equal(mu0, mu)
  np.testing.assert_allclose(half, mu + 0.5 * sigma * eps, rtol=1e-5, atol=1e-6)
  assert np.abs(eps).min() > 0 and 0.3 < np.std(eps) < 3  # there was noise to remove


def _images(models, params, ids, lens, z, ca_noise, noise_key):
  words, sentence = encode_text(models, params["text_encoder"], ids, lens)
  images, _, _, _ = models.generator.apply(
      {"params": params["g_ema"], "batch_stats": params["batch_stats"]}, z, sentence, words,
      padding_mask(lens, ids.shape[1]), train=False, ca_noise=ca_noise,
      rngs={"noise": noise_key})
  return images[-1][0]


def test_the_sampler_scales_z_and_takes_the_conditioning_mean():
  """With z x 0.5 and conditioning noise 0, each caption's image is the
  generator's on 0.5 z from its key, whatever the conditioning noise key; the
  official sampler's images differ."""
  c = tiny.get_config()
  c.gan.sample_z_scale, c.gan.sample_ca_noise = 0.5, 0.0
  models = factory.create_models(c)
  state = gan_state.init_gan_state(models, c, jax.random.key(0))
  # Weights unlike the initial ones, whose images barely depend on z or c.
  params = sampling_params(state.replace(g_ema=jax.tree.map(lambda p: 2.0 * p + 0.01,
                                                            state.g_ema)))
  rng = np.random.default_rng(0)
  lens = np.array([3, 6, 4], np.int32)
  ids = np.where(np.arange(6)[None] < lens[:, None], rng.integers(1, c.text.vocab_size, (3, 6)),
                 0).astype(np.int32)
  keys = example_keys(jax.random.key(7), np.arange(3))
  got = jax.jit(make_sampler(models, c))(params, ids, lens, keys)[0][-1]
  for n in range(3):
    z_key, _ = jax.random.split(keys[n])  # the second key is the sampler's CA noise
    z = 0.5 * jax.random.normal(z_key, (1, c.model.z_dim))
    other = jax.random.key(99)  # not the sampler's: the mean code draws nothing from it
    want = _images(models, params, ids[n:n + 1], lens[n:n + 1], z, 0.0, other)
    np.testing.assert_allclose(got[n], want, atol=5e-4)  # jit and vmap reassociate
  c.gan.sample_z_scale, c.gan.sample_ca_noise = 1.0, 1.0
  official = jax.jit(make_sampler(models, c))(params, ids, lens, keys)[0][-1]
  assert np.abs(np.asarray(official - got)).max() > 1e-2
  z = jax.random.normal(jax.random.split(keys[0])[0], (1, c.model.z_dim))  # z not scaled
  assert np.abs(np.asarray(_images(models, params, ids[:1], lens[:1], z, 0.0, other) - got[0])
                ).max() > 1e-2
