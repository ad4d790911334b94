"""`gan.ema_bn_batches`: the EMA generator's own BatchNorm statistics
(sampling.make_ema_stats) and where sampling takes its statistics from."""

import jax
import jax.numpy as jnp
import numpy as np

from configs import tiny
from mirrorgan_jax import factory, gan_state
from mirrorgan_jax.gan_step import encode_text
from mirrorgan_jax.models.text_encoder import padding_mask
from mirrorgan_jax.sampling import EMA_STATS_STREAM, make_ema_stats, sampling_params


def _setup():
  c = tiny.get_config()
  models = factory.create_models(c)
  state = gan_state.init_gan_state(models, c, jax.random.key(0))
  # EMA parameters unlike the live ones, as after training.
  state = state.replace(g_ema=jax.tree.map(lambda p: 1.3 * p + 0.01, state.g_ema))
  rng = np.random.default_rng(0)
  t = c.text.words_num
  lens = rng.integers(2, t + 1, size=c.batch_size).astype(np.int32)
  ids = rng.integers(1, c.text.vocab_size, size=(c.batch_size, t)).astype(np.int32)
  ids = np.where(np.arange(t)[None] < lens[:, None], ids, 0)
  return c, models, state, ids, lens


def _images(models, state, stats, ids, lens, z, noise_key, train):
  words, sentence = encode_text(models, state.text_encoder, ids, lens)
  out = models.generator.apply(
      {"params": state.g_ema, "batch_stats": stats}, z, sentence, words,
      padding_mask(lens, ids.shape[1]), train=train, rngs={"noise": noise_key},
      mutable=["batch_stats"] if train else False)
  return (out[0] if train else out)[0]


def test_the_statistics_of_one_batch_make_eval_mode_equal_train_mode_on_it():
  """With the statistics drawn from one batch, the generator in eval mode
  normalises that batch exactly as train mode (its batch statistics) does."""
  c, models, state, ids, lens = _setup()
  seed = 5
  stats = jax.jit(make_ema_stats(models, c))(state, ids[None], lens[None], np.int32(seed))
  key = jax.random.split(jax.random.fold_in(jax.random.key(seed), EMA_STATS_STREAM), 1)[0]
  z_key, noise_key = jax.random.split(key)
  z = jax.random.normal(z_key, (len(ids), c.model.z_dim))
  train = _images(models, state, state.g.batch_stats, ids, lens, z, noise_key, True)
  with_stats = _images(models, state, stats, ids, lens, z, noise_key, False)
  live = _images(models, state, state.g.batch_stats, ids, lens, z, noise_key, False)
  for a, b, other in zip(train, with_stats, live):
    np.testing.assert_allclose(a, b, atol=2e-5)
    assert np.abs(np.asarray(a) - np.asarray(other)).max() > 1e-2  # the live ones differ


def test_the_statistics_of_several_batches_are_the_mean_of_each_batchs():
  c, models, state, ids, lens = _setup()
  ema_stats = jax.jit(make_ema_stats(models, c))
  two = (np.stack([ids, ids[::-1]]), np.stack([lens, lens[::-1]]))
  both = ema_stats(state, *two, np.int32(0))
  # Each batch alone, with the noise the two-batch call gave it.
  keys = jax.random.split(jax.random.fold_in(jax.random.key(0), EMA_STATS_STREAM), 2)
  per = []
  for k, (i, n) in enumerate(zip(*two)):
    z_key, noise_key = jax.random.split(keys[k])
    z = jax.random.normal(z_key, (len(i), c.model.z_dim))
    words, sentence = encode_text(models, state.text_encoder, i, n)
    _, new = models.generator.apply(
        {"params": state.g_ema, "batch_stats": jax.tree.map(jnp.zeros_like, state.g.batch_stats)},
        z, sentence, words, padding_mask(n, i.shape[1]), train=True,
        rngs={"noise": noise_key}, mutable=["batch_stats"])
    per.append(jax.tree.map(lambda x: x / 0.1, new["batch_stats"]))  # PyTorch momentum 0.1
  jax.tree.map(lambda m, a, b: np.testing.assert_allclose(m, (a + b) / 2, rtol=1e-5, atol=1e-6),
               both, *per)


def test_sampling_takes_the_ema_statistics_when_the_state_keeps_them():
  _, _, state, _, _ = _setup()
  assert sampling_params(state)["batch_stats"] is state.g_ema_stats  # tiny keeps them
  assert jax.tree.structure(state.g_ema_stats) == jax.tree.structure(state.g.batch_stats)
  official = state.replace(g_ema_stats={})
  assert sampling_params(official)["batch_stats"] is state.g.batch_stats
