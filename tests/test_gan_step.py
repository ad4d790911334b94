"""The training iteration end to end at the tiny config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from mirrorgan_jax import factory, gan_state, gan_step, losses, parallel
from mirrorgan_jax.models.text_encoder import padding_mask
from mirrorgan_jax.batch import random_batch

KEY = jax.random.key(42)


def build(config, devices):
  models = factory.create_models(config)
  mesh = parallel.make_mesh(devices)
  init = parallel.jit_init(lambda k: gan_state.init_gan_state(models, config, k), mesh)
  step = parallel.jit_train_step(gan_step.make_train_step(models, config), mesh)
  return models, mesh, init, step


def run(config, built, steps, batch=None):
  """`steps` iterations on one fixed batch; `built` is `build(...)`'s result."""
  models, mesh, init, step = built
  state = init(jax.random.key(config.seed))
  batch = parallel.global_batch(mesh, batch or random_batch(config))
  history = []
  for _ in range(steps):
    state, metrics = step(state, batch, KEY)
    history.append(jax.device_get(metrics))
  return jax.device_get(state), history


@pytest.fixture(scope="module")
def config():
  return tiny.get_config()


@pytest.fixture(scope="module")
def one_device(config):
  return build(config, jax.devices()[:1])


def test_one_iteration_updates_what_it_should(config, one_device):
  models, mesh, init, step = one_device
  state0 = jax.device_get(init(jax.random.key(0)))
  batch = random_batch(config)
  state1, metrics = step(init(jax.random.key(0)), parallel.global_batch(mesh, batch), KEY)
  state1, metrics = jax.device_get((state1, metrics))
  assert int(state1.step) == 1
  assert all(np.isfinite(v) for v in metrics.values()), metrics
  for k in ("g_loss", "d_loss", "g_stream", "g_kl", "g_adv_0", "g_adv_1", "d_loss_0",
            "d_loss_1", "d_cond_wrong_1"):
    assert k in metrics
  expected_g = (metrics["g_adv_0"] + metrics["g_adv_1"]
                + config.loss.stream_weight * metrics["g_stream"]
                + config.loss.kl_weight * metrics["g_kl"])
  assert metrics["g_loss"] == pytest.approx(expected_g, rel=1e-6)
  assert metrics["d_loss"] == pytest.approx(metrics["d_loss_0"] + metrics["d_loss_1"], rel=1e-6)

  changed = lambda a, b: not all(  # noqa: E731
      np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  assert changed(state0.g.params, state1.g.params)
  assert changed(state0.g.batch_stats, state1.g.batch_stats)
  for d0, d1 in zip(state0.d, state1.d):
    assert changed(d0.params, d1.params)
  # Frozen networks are untouched.
  jax.tree.map(np.testing.assert_array_equal, state0.text_encoder, state1.text_encoder)
  jax.tree.map(np.testing.assert_array_equal, state0.stream, state1.stream)
  # EMA: 0.999 * old + 0.001 * new, parameters only.
  jax.tree.map(lambda e, old, new: np.testing.assert_allclose(
      e, 0.999 * old + 0.001 * new, rtol=1e-6, atol=1e-7),
      state1.g_ema, state0.g.params, state1.g.params)


def test_generator_loss_goes_through_the_updated_discriminators(config, one_device):
  """Recompute the fakes (same keys) and score them with the *returned* D
  parameters: the adversarial terms must equal the step's metrics. G's new
  BatchNorm statistics must be those of exactly one forward."""
  models, mesh, init, step = one_device
  state0 = jax.device_get(init(jax.random.key(0)))
  batch = random_batch(config)
  state1, metrics = jax.device_get(step(init(jax.random.key(0)),
                                        parallel.global_batch(mesh, batch), KEY))
  key = jax.random.fold_in(KEY, 0)
  z_key, noise_key = jax.random.split(key)
  caps, lens = jnp.asarray(batch["captions"]), jnp.asarray(batch["caption_lens"])
  words, sent = gan_step.encode_text(models, state0.text_encoder, caps, lens)
  z = jax.random.normal(z_key, (config.batch_size, config.model.z_dim))
  (fakes, _, _, _), g_vars = models.generator.apply(
      {"params": state0.g.params, "batch_stats": state0.g.batch_stats}, z, sent, words,
      padding_mask(lens, caps.shape[1]), train=True, rngs={"noise": noise_key},
      mutable=["batch_stats"])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               g_vars["batch_stats"], state1.g.batch_stats)
  for i, (disc, d_new, d_old) in enumerate(zip(models.discriminators, state1.d, state0.d)):
    def adv(d):
      (u, c), _ = disc.apply({"params": d.params, "batch_stats": d.batch_stats},
                             fakes[i], sent, mutable=["batch_stats"])
      return float(losses.generator_adversarial_loss(u, c))
    assert adv(d_new) == pytest.approx(metrics[f"g_adv_{i}"], rel=1e-4)
    assert adv(d_old) != pytest.approx(metrics[f"g_adv_{i}"], rel=1e-4)


def test_repeated_iterations_on_one_batch_lower_the_d_loss(config, one_device):
  _, history = run(config, one_device, 25)
  d = [h["d_loss"] for h in history]
  assert all(np.isfinite(d))
  assert np.mean(d[-5:]) < 0.9 * np.mean(d[:3]), d


def test_same_seed_gives_bitwise_identical_state_after_three_iterations(config, one_device):
  _, mesh, init, step = one_device
  batch = parallel.global_batch(mesh, random_batch(config))

  def three():
    state = init(jax.random.key(7))
    for _ in range(3):
      state, _ = step(state, batch, KEY)
    return jax.device_get(state)

  a, b = three(), three()
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b) > 0
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(x, y)
  # A different key gives a different state (the test can fail).
  state = init(jax.random.key(7))
  for _ in range(3):
    state, _ = step(state, batch, jax.random.key(43))
  assert not np.array_equal(jax.tree.leaves(jax.device_get(state).g.params)[0],
                            jax.tree.leaves(a.g.params)[0])


def test_eight_devices_give_the_same_state_as_one(config, one_device):
  assert len(jax.devices()) == 8
  batch = random_batch(config)  # batch 8: one example per device
  one, m1 = run(config, one_device, 1, batch)
  eight, m8 = run(config, build(config, jax.devices()), 1, batch)
  # Relative difference per state leaf, ||one - eight|| / ||one||. Elementwise
  # ratios would measure rounding noise: Adam's first step maps gradients that
  # are zero up to rounding (~1e-9, from a different summation order) to +-lr.
  worst, where = 0.0, None
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(one), jax.tree.leaves(eight)):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    rel = float(np.linalg.norm(x - y) / max(np.linalg.norm(x), 1e-30))
    if rel > worst:
      worst, where = rel, jax.tree_util.keystr(path)
  assert worst <= 1e-5, (worst, where)
  assert m1[0]["g_loss"] == pytest.approx(m8[0]["g_loss"], rel=1e-5)


def test_bfloat16_compute_keeps_float32_parameters_optimizer_and_losses(config):
  c = tiny.get_config()
  c.dtype = "bfloat16"
  state, history = run(c, build(c, jax.devices()[:1]), 2)
  for tree in (state.g.params, state.g.opt_state, state.g_ema, state.d[0].params,
               state.d[1].opt_state):
    floats = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert floats and all(x.dtype == jnp.float32 for x in floats)
  for metrics in history:
    assert all(np.asarray(v).dtype == np.float32 and np.isfinite(v) for v in metrics.values())


def test_without_wrong_captions_each_image_meets_the_next_caption(config, one_device):
  """The fallback wrong pair (jnp.roll of the sentences) runs and gives a
  different mismatched-pair term from the pipeline's wrong captions."""
  _, with_wrong = run(config, one_device, 1, random_batch(config))
  _, rolled = run(config, build(config, jax.devices()[:1]), 1, random_batch(config, wrong=False))
  assert all(np.isfinite(v) for v in rolled[0].values())
  assert rolled[0]["d_cond_wrong_0"] != pytest.approx(with_wrong[0]["d_cond_wrong_0"], rel=1e-6)
  assert rolled[0]["d_real_0"] == pytest.approx(with_wrong[0]["d_real_0"], rel=1e-6)


def test_batch_must_divide_over_the_mesh(config):
  c = tiny.get_config()
  c.batch_size = 12
  with pytest.raises(ValueError, match=r"config.batch_size \(12\) must be divisible .* \(8\)"):
    parallel.global_batch(parallel.make_mesh(jax.devices()), random_batch(c))
