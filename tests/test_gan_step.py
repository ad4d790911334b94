"""The training iteration end to end at the tiny config (and the pretraining
steps' guard against non-finite updates, which is the GAN step's)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import tiny
from mirrorgan_jax import (damsm, factory, gan_state, gan_step, losses, negatives, parallel,
                           pretrain_steps)
from mirrorgan_jax.models.discriminator import Discriminator, edge_channels
from mirrorgan_jax.models.generator import ConditioningAugmentation
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
  for k in ("update_skipped", "nonfinite_g", "nonfinite_d_0", "nonfinite_d_1"):
    assert metrics[k] == 0, k

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


def test_negatives_are_blurred_reals_scored_as_fakes_in_each_d_loss(config):
  """With `loss.negative_weight` each D's loss is the official one plus the
  weight times its negative term, and that term is the fake-label BCE of the
  blurred real images (drawn from the step's key, fold_in 1, then the
  stage), scored here apart by the D as it was before the update."""
  c = tiny.get_config()
  c.loss.negative_weight = 0.5
  models, mesh, init, step = build(c, jax.devices()[:1])
  state0 = jax.device_get(init(jax.random.key(0)))
  batch = random_batch(c)
  _, metrics = jax.device_get(step(init(jax.random.key(0)), parallel.global_batch(mesh, batch),
                                   KEY))
  neg_key = jax.random.fold_in(jax.random.fold_in(KEY, 0), 1)
  caps, lens = jnp.asarray(batch["captions"]), jnp.asarray(batch["caption_lens"])
  _, sent = gan_step.encode_text(models, state0.text_encoder, caps, lens)
  for i, (disc, d) in enumerate(zip(models.discriminators, state0.d)):
    neg = negatives.blurred(jnp.asarray(batch["images"][i]), jax.random.fold_in(neg_key, i),
                            c.loss.negative_min_share)
    (u, cond), _ = disc.apply({"params": d.params, "batch_stats": d.batch_stats}, neg, sent,
                              mutable=["batch_stats"])
    want = (float(losses.bce(u, 0.0)) + float(losses.bce(cond, 0.0))) / 2
    assert metrics[f"d_negative_{i}"] == pytest.approx(want, rel=1e-4)
    t = {k: metrics[f"d_{k}_{i}"] for k in ("real", "cond_real", "fake", "cond_fake",
                                            "cond_wrong", "negative")}
    official = (t["real"] + t["cond_real"]) / 2 + (t["fake"] + t["cond_fake"] + t["cond_wrong"]) / 3
    assert metrics[f"d_loss_{i}"] == pytest.approx(official + 0.5 * t["negative"], rel=1e-5)


def test_edge_channels_are_the_largest_channels_differences_times_the_gain():
  image = np.full((1, 2, 3, 3), -1.0, np.float32)
  largest = [[0.2, 0.7, -0.5], [1.0, 0.0, 0.3]]
  for y in range(2):
    for x in range(3):
      image[0, y, x, (x + y) % 3] = largest[y][x]  # the largest in a different channel each
  out = np.asarray(edge_channels(jnp.asarray(image), 10.0))
  np.testing.assert_array_equal(out[..., :3], image)
  np.testing.assert_allclose(out[0, ..., 3], [[5.0, -12.0, 0.0], [-10.0, 3.0, 0.0]], atol=1e-6)
  np.testing.assert_allclose(out[0, ..., 4], [[8.0, -7.0, 8.0], [0.0, 0.0, 0.0]], atol=1e-6)


def test_the_edge_critic_is_one_more_d_and_leaves_every_other_network_as_it_was(config,
                                                                               one_device):
  """`loss.edge_d_weight`: one more D at the last scale whose trunk reads 5
  channels; every other network starts as without it (same key); its terms
  are logged apart (d_loss stays the stages' sum) and its adversarial term
  counts in G's loss at the weight."""
  c = tiny.get_config()
  c.loss.edge_d_weight = 0.3
  models, mesh, init, step = build(c, jax.devices()[:1])
  with_edge = host(init(jax.random.key(0)))
  without = host(one_device[2](jax.random.key(0)))
  assert without.edge_d == {}
  assert_bitwise_equal(with_edge.replace(edge_d={}), without)
  assert with_edge.edge_d.params["trunk"]["down0"]["kernel"].shape == (4, 4, 5, c.model.ndf)
  _, m = host(step(init(jax.random.key(0)), parallel.global_batch(mesh, random_batch(c)), KEY))
  assert {"d_loss_edge", "d_negative_edge", "g_adv_edge", "nonfinite_d_edge"} <= set(m)
  assert m["d_loss"] == pytest.approx(m["d_loss_0"] + m["d_loss_1"], rel=1e-6)
  want = (m["g_adv_0"] + m["g_adv_1"] + 0.3 * m["g_adv_edge"]
          + c.loss.stream_weight * m["g_stream"] + c.loss.kl_weight * m["g_kl"])
  assert m["g_loss"] == pytest.approx(want, rel=1e-5)


def test_damsm_term_is_the_matching_loss_of_the_last_fakes_by_the_frozen_encoders(config):
  """With `loss.damsm_weight` (AttnGAN's G term, a deviation) G's loss adds the
  weight times DAMSM's word and sentence matching losses of the last stage's
  fakes against their captions: the step's fakes, recomputed here from its
  keys, through the image encoder in inference mode, pairs of the same class
  not counted as wrong matches. The image encoder is never updated."""
  c = tiny.get_config()
  c.loss.damsm_weight = 2.0
  models, mesh, init, step = build(c, jax.devices()[:1])
  state0 = jax.device_get(init(jax.random.key(0)))
  assert jax.tree.leaves(state0.image_encoder)
  batch = random_batch(c)
  new, metrics = jax.device_get(step(init(jax.random.key(0)),
                                     parallel.global_batch(mesh, batch), KEY))
  z_key, noise_key = jax.random.split(jax.random.fold_in(KEY, 0))
  caps, lens = jnp.asarray(batch["captions"]), jnp.asarray(batch["caption_lens"])
  words, sent = gan_step.encode_text(models, state0.text_encoder, caps, lens)
  z = jax.random.normal(z_key, (caps.shape[0], c.model.z_dim))
  (fakes, _, _, _), _ = models.generator.apply(
      {"params": state0.g.params, "batch_stats": state0.g.batch_stats}, z, sent, words,
      padding_mask(lens, caps.shape[1]), train=True, rngs={"noise": noise_key},
      mutable=["batch_stats"])
  regions, code = models.image_encoder.apply(state0.image_encoder, fakes[-1], train=False)
  gammas = (c.damsm.gamma1, c.damsm.gamma2, c.damsm.gamma3)
  want = damsm.damsm_losses(regions, code, words, sent, lens, batch["class_ids"], *gammas)
  assert metrics["g_damsm"] == pytest.approx(float(want["loss"]), rel=1e-4)
  unmasked = damsm.damsm_losses(regions, code, words, sent, lens,
                                jnp.arange(caps.shape[0]), *gammas)["loss"]
  assert abs(float(unmasked) - float(want["loss"])) > 1e-3  # the class ids matter here
  total = (sum(metrics[f"g_adv_{i}"] for i in range(c.model.num_stages))
           + c.loss.stream_weight * metrics["g_stream"] + c.loss.kl_weight * metrics["g_kl"]
           + 2.0 * metrics["g_damsm"])
  assert metrics["g_loss"] == pytest.approx(float(total), rel=1e-5)
  jax.tree.map(np.testing.assert_array_equal, new.image_encoder, state0.image_encoder)


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
  # The worst leaf is a BatchNorm bias whose gradient nearly cancels: 1.2e-5
  # with the sub-pixel image heads of configs/tiny.py (via shapes), under 1e-5
  # before. Per-device statistics or a lost all-reduce change gradients by
  # their own size, far above this.
  assert worst <= 3e-5, (worst, where)
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


def host(tree):
  """A writable host copy: the step donates its state argument."""
  return jax.tree.map(np.array, jax.device_get(tree))


def replicated(mesh, state):
  """`state` placed as `init` places it: numpy arguments would compile the
  step a second time."""
  return jax.device_put(state, parallel.replicated(mesh))


def assert_bitwise_equal(a, b, networks_first=True):
  """Leaf by leaf, naming the first that differs. A state's networks are
  compared before its `step`, so that a failure names a network's leaf."""
  if networks_first and hasattr(a, "step"):
    assert_bitwise_equal(a.replace(step=b.step), b, networks_first=False)
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert jax.tree.structure(a) == jax.tree.structure(b) and len(la) > 0
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), lb):
    np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))


def assert_differs(a, b):
  assert any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def assert_all_finite(tree):
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(tree)
             if np.issubdtype(np.asarray(x).dtype, np.inexact))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_all_finite_sees_one_bad_value_in_any_leaf_of_a_shared_shape(bad):
  """`all_finite` folds the leaves of one shape into one reduction
  (a + 0 * b + ...): compiled, a bad value in any of them, first or last
  element, must still be seen, and the largest finite floats must not be taken
  for overflow. Integer leaves are not checked."""
  big = np.finfo(np.float32).max
  leaves = [np.full((3, 4), big, np.float32), np.full((3, 4), big, np.float32),
            np.ones((3, 4), np.float32), np.ones(5, np.float32),
            np.ones((3, 4), jnp.bfloat16), np.zeros(2, np.int32)]
  check = jax.jit(gan_state.all_finite)
  assert bool(check({"a": leaves[:3]}, leaves[3:]))
  for i in range(5):
    for pos in (0, -1):
      broken = [x.copy() for x in leaves]
      broken[i].flat[pos] = bad
      assert not bool(check({"a": broken[:3]}, broken[3:])), (i, pos)


def test_a_nonfinite_update_with_finite_losses_is_dropped_and_the_next_step_applies(
    config, one_device):
  """A real image with one corrupt pixel of 1e22 (a decoding or scaling bug):
  in float32 BatchNorm its activation's square overflows, so D0's batch
  variance is inf. The normalised output, every loss and metric and every
  gradient stay finite (the trainer's guard sees nothing), but the running
  variance would be stored as inf. D0's update must be dropped and reported,
  leaving D0 bit for bit as it was; the other networks' updates are kept
  (D1's exactly as from a batch without the bad pixel, which only D0 reads),
  and the next good batch updates D0 again."""
  _, mesh, init, step = one_device
  good = random_batch(config)
  bad = random_batch(config, seed=1)
  fixed = {**bad, "images": tuple(x.copy() for x in bad["images"])}
  bad["images"] = (bad["images"][0].copy(),) + bad["images"][1:]
  bad["images"][0][0, 0, 0, 0] = 1e22
  before = host(step(init(jax.random.key(0)), parallel.global_batch(mesh, good), KEY)[0])

  after_bad, m = host(step(replicated(mesh, before), parallel.global_batch(mesh, bad), KEY))
  assert all(np.isfinite(v) for v in m.values()), m
  assert (m["update_skipped"], m["nonfinite_d_0"], m["nonfinite_d_1"], m["nonfinite_g"]) == (
      1, 1, 0, 0)
  assert_all_finite(after_bad)
  assert_bitwise_equal(after_bad.d[0], before.d[0])  # parameters, Adam, BatchNorm
  assert_differs(after_bad.g.params, before.g.params)
  assert int(after_bad.step) == int(before.step) + 1  # G's update was kept
  after_fixed, _ = host(step(replicated(mesh, before), parallel.global_batch(mesh, fixed), KEY))
  assert_bitwise_equal(after_bad.d[1], after_fixed.d[1])

  after_good, m = host(step(replicated(mesh, after_bad), parallel.global_batch(mesh, good),
                            KEY))
  assert m["update_skipped"] == 0 and int(after_good.step) == int(before.step) + 2
  assert_differs(after_good.d[0].params, before.d[0].params)


def _inf_stream_weight(state):
  """An infinite weight in the frozen STREAM's LSTM (forget gate, first input):
  the gate saturates exactly (sigmoid(+-inf) is 0 or 1), so the captioner's
  output and every loss stay finite, but the backward pass multiplies the
  gate's zero derivative by inf: NaN in G's gradients."""
  kernel = state.stream["params"]["decoder"]["lstm"]["if"]["kernel"]
  kernel[0, 0] = np.inf


def _huge_logvar(state):
  """G's conditioning augmentation with its log-variance driven to ~50 (bias
  50, its GLU gate open): the KL term (~1e21) and G's gradients (~1e20) are
  finite, but Adam squares the gradient: its second moment overflows to inf,
  after which those parameters would never move again."""
  bias = state.g.params["ca_net"]["fc"]["bias"]
  cond = bias.shape[0] // 4  # [mu, logvar | their gates]
  bias[cond:2 * cond] = 50.0
  bias[3 * cond:] = 30.0


@pytest.mark.parametrize("culprit", [_inf_stream_weight, _huge_logvar],
                         ids=["nan_gradient", "adam_overflow"])
def test_a_nonfinite_generator_update_with_finite_losses_is_dropped(config, one_device,
                                                                     culprit):
  """Finite losses, a non-finite G update (see each culprit): G, its EMA and
  the step count stay bit for bit as they were, the Ds' finite updates are
  kept, and the metrics say G. With the NaN from the frozen STREAM (which no D
  reads) the Ds are exactly those of the same iteration without it."""
  _, mesh, init, step = one_device
  clean = host(init(jax.random.key(0)))
  before = jax.tree.map(np.copy, clean)
  culprit(before)
  batch = parallel.global_batch(mesh, random_batch(config))
  after, m = host(step(replicated(mesh, before), batch, KEY))
  assert all(np.isfinite(v) for v in m.values()), m
  assert (m["update_skipped"], m["nonfinite_g"], m["nonfinite_d_0"], m["nonfinite_d_1"]) == (
      1, 1, 0, 0)
  assert_all_finite((after.g, after.g_ema, after.d))
  assert_bitwise_equal((after.g, after.g_ema, after.step), (before.g, before.g_ema, before.step))
  assert_differs(after.d, before.d)
  if culprit is _inf_stream_weight:
    after_clean, _ = host(step(replicated(mesh, clean), batch, KEY))
    assert_bitwise_equal(after.d, after_clean.d)


def _one_stage(batch_size=2, ndf=None):
  c = tiny.get_config()
  c.model.num_stages, c.batch_size = 1, batch_size
  if ndf is not None:
    c.model.ndf = ndf
  return c


def test_a_nonfinite_loss_with_finite_updates_is_dropped_by_the_step_itself(monkeypatch):
  """The trainer's guard does not select over the GAN state (a second copy of
  it through the step), so the step must drop an update whose loss is not
  finite even when the update is: here G's KL term is +inf with its gradient
  untouched. G's update is dropped; D's, whose loss is finite, is kept."""
  real_kl = losses.kl_loss
  monkeypatch.setattr(losses, "kl_loss", lambda mu, logvar: real_kl(mu, logvar)
                      + jax.lax.stop_gradient(jnp.float32(np.inf)))
  c = _one_stage()
  _, mesh, init, step = build(c, jax.devices()[:1])
  before = host(init(jax.random.key(0)))
  after, m = host(step(replicated(mesh, before), parallel.global_batch(mesh, random_batch(c)),
                       KEY))
  assert m["g_kl"] == np.inf and m["update_skipped"] == 1
  assert (m["nonfinite_g"], m["nonfinite_d_0"]) == (1, 0)
  assert_bitwise_equal((after.g, after.g_ema, after.step), (before.g, before.g_ema, before.step))
  assert_differs(after.d[0].params, before.d[0].params)


def test_the_step_holds_no_second_copy_of_the_trained_networks():
  """The commit writes each update over the donated state in place
  (gan_step.py). Selecting between two finished states kept a second copy of
  every trained network and its Adam moments, with their gradients, through
  the step: XLA's plan for the step as the trainer compiles it (guard
  included) then needed 2.0x the trained state in temporaries at this size;
  one verdict for the whole iteration (the Ds' new parameters and gradients
  held through G's pass, every old moment copied) 1.24x; 1.10x now."""
  from mirrorgan_jax import guarded_step
  c = _one_stage(ndf=128)  # the Ds' parameters outweigh the activations
  models = factory.create_models(c)
  mesh = parallel.make_mesh(jax.devices()[:1])
  shapes = jax.eval_shape(lambda k: gan_state.init_gan_state(models, c, k), KEY)
  trained_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(
      (shapes.g.params, shapes.g.opt_state, shapes.g_ema,
       [(d.params, d.opt_state) for d in shapes.d])))
  state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(
      s.shape, s.dtype, sharding=parallel.replicated(mesh)), shapes)
  step = parallel.jit_train_step(guarded_step.gan_train_step(models, c), mesh)
  plan = step.lower(state, parallel.global_batch(mesh, random_batch(c)), KEY).compile()
  temp = plan.memory_analysis().temp_size_in_bytes
  assert temp < 1.2 * trained_bytes, (temp, trained_bytes)


@pytest.mark.parametrize("damsm_weight,edge_d_weight,twin_weight",
                         [(None, 0.0, 0.0), (2.0, 0.0, 0.0), (None, 0.3, 0.0), (None, 0.0, 5.0)])
def test_generator_update_equals_an_independent_gradient_of_its_loss(damsm_weight,
                                                                      edge_d_weight,
                                                                      twin_weight):
  """The step differentiates G's loss through `jax.vjp` of its single forward
  pass. Here the same loss is written out from the public pieces (G forward,
  D updates by `jax.grad` of the D losses, the adversarial, STREAM and KL
  terms through the updated Ds) and differentiated by plain `jax.grad`, with
  a second G forward. From the state after one iteration (Adam's moments are
  not zero), the new first moments b1 * mu + (1 - b1) * grad, from the same
  mu, compare the gradients themselves (the parameters alone would hide a
  wrong gradient scale: Adam normalises it away), then the second moments and
  parameters. Compiled as the suite compiles (most of XLA's optimisations
  off), 2 of G's 16,384 largest-leaf first moments differ by 2.1e-7 (bit-equal
  when both programs are optimised, measured 2026-12-01 and -02); the
  tolerances leave XLA that room to reassociate sums, far below what a wrong
  term or scale of the gradient changes. Once with the tiny config as it is,
  once with AttnGAN's DAMSM term, once with the edge critic (whose update is
  compared too: a D on the image with `edge_channels` written out here), once
  with colour twins (a twin every 4 rows taking the z and conditioning noise of
  the row before it, the coverages written out from the image heads'
  convolutions)."""
  config = tiny.get_config()
  if damsm_weight is not None:
    config.loss.damsm_weight = damsm_weight
  config.loss.edge_d_weight = edge_d_weight
  config.loss.colour_twin_weight = twin_weight
  config.gan.twin_every = 4  # rows 3 and 7 are the twins of rows 2 and 6
  models, mesh, init, step = build(config, jax.devices()[:1])
  batch = random_batch(config)
  state = host(step(init(jax.random.key(0)), parallel.global_batch(mesh, batch), KEY)[0])
  new, _ = host(step(replicated(mesh, state), parallel.global_batch(mesh, batch), KEY))

  @jax.jit
  def reference(state, batch):
    z_key, noise_key = jax.random.split(jax.random.fold_in(KEY, state.step))
    caps, lens = batch["captions"], batch["caption_lens"]
    words, sent = gan_step.encode_text(models, state.text_encoder, caps, lens)
    _, wrong = gan_step.encode_text(models, state.text_encoder, batch["wrong_captions"],
                                    batch["wrong_caption_lens"])
    b = caps.shape[0]
    z = jax.random.normal(z_key, (b, config.model.z_dim))
    if twin_weight:  # a twin takes its row's z (and its CA noise: `twin_every`)
      z = z[np.array([0, 1, 2, 2, 4, 5, 6, 6])]

    def generate(params, coverages=False):
      (fakes, _, mu, logvar), v = models.generator.apply(
          {"params": params, "batch_stats": state.g.batch_stats}, z, sent, words,
          padding_mask(lens, caps.shape[1]), train=True, rngs={"noise": noise_key},
          twin_every=4 if twin_weight else 0, mutable=["batch_stats", "intermediates"],
          capture_intermediates=lambda m, method: (
              method == "__call__" and m.scope.path[:1] in (("img_net1",), ("img_net2",))
              and m.scope.path[1:] == ("conv",)))
      if not coverages:
        return fakes, mu, logvar
      covs = []
      for stage in (1, 2):  # the masked head's 5 channels per sub-pixel
        y = v["intermediates"][f"img_net{stage}"]["conv"]["__call__"][0]
        y = y.reshape(y.shape[:-1] + (-1, 5))
        covs.append(jax.nn.sigmoid(y[..., 3]) * jax.nn.sigmoid(y[..., 4]))
      return fakes, mu, logvar, covs

    fakes = generate(state.g.params)[0]
    # the shapes-derived tiny config's negatives: blurred reals, keys as the step's
    neg_key = jax.random.fold_in(jax.random.fold_in(KEY, state.step), 1)
    weight = config.loss.negative_weight
    # (D, its state, what it reads of a batch of images): the stages' Ds, then
    # the edge critic, a plain D of the last scale's size on 5 channels
    critics = [(disc, d, lambda x, i=i: x[i])
               for i, (disc, d) in enumerate(zip(models.discriminators, state.d))]
    if edge_d_weight:
      plain = Discriminator(models.discriminators[-1].image_size, config.model.ndf)
      critics.append((plain, state.edge_d, lambda x: edge_input(x[-1])))
    updated_d = []
    for k, (disc, d, view) in enumerate(critics):
      real = batch["images"][min(k, len(fakes) - 1)]
      neg = (negatives.blurred(real, jax.random.fold_in(neg_key, k),
                               config.loss.negative_min_share) if weight else None)
      if k == len(fakes):
        neg = edge_input(neg)

      def d_loss(p, disc=disc, d=d, view=view, neg=neg):
        logits, _ = disc.apply({"params": p, "batch_stats": d.batch_stats},
                               view(batch["images"]), view(fakes), sent, wrong, neg,
                               method="discriminate", mutable=["batch_stats"])
        return losses.discriminator_loss(logits, weight)[0]
      updates, _ = models.d_tx.update(jax.grad(d_loss)(d.params), d.opt_state, d.params)
      updated_d.append({"params": optax.apply_updates(d.params, updates),
                        "batch_stats": d.batch_stats})

    def g_loss(params):
      fakes, mu, logvar, covs = generate(params, coverages=True)
      total = losses.kl_loss(mu, logvar) * config.loss.kl_weight
      total += twin_weight * sum(jnp.mean((c[3::4] - c[2::4])**2) for c in covs)
      for k, ((disc, _, view), variables) in enumerate(zip(critics, updated_d)):
        (u, c), _ = disc.apply(variables, view(fakes), sent, mutable=["batch_stats"])
        total += (edge_d_weight if k == len(fakes) else 1.0) * (
            losses.generator_adversarial_loss(u, c))
      captions = models.captioner.apply(state.stream, fakes[-1], caps)
      total += config.loss.stream_weight * losses.caption_loss(captions, caps, lens)
      if config.loss.damsm_weight:  # AttnGAN's term, where the config sets it
        regions, code = models.image_encoder.apply(state.image_encoder, fakes[-1], train=False)
        total += config.loss.damsm_weight * damsm.damsm_losses(
            regions, code, words, sent, lens, batch["class_ids"], config.damsm.gamma1,
            config.damsm.gamma2, config.damsm.gamma3)["loss"]
      return total

    grads = jax.grad(g_loss)(state.g.params)
    updates, opt_state = models.g_tx.update(grads, state.g.opt_state, state.g.params)
    return optax.apply_updates(state.g.params, updates), opt_state, updated_d[len(fakes):]

  params, opt_state, edge_d = host(reference(state, batch))
  compare = lambda a, b, **tol: jax.tree.map(  # noqa: E731
      lambda x, y: np.testing.assert_allclose(x, y, **tol), a, b)
  # the gradient, through Adam's b1
  compare(new.g.opt_state[0].mu, opt_state[0].mu, rtol=1e-5, atol=1e-6)
  compare(new.g.opt_state[0].nu, opt_state[0].nu, rtol=1e-4, atol=1e-12)
  compare(new.g.params, params, rtol=1e-5, atol=1e-6)
  assert int(new.g.opt_state[0].count) == int(opt_state[0].count) == 2
  if edge_d_weight:
    compare(new.edge_d.params, edge_d[0]["params"], rtol=1e-5, atol=1e-6)
  else:
    assert new.edge_d == {} and edge_d == []


@pytest.mark.parametrize("every", [2, 4])
def test_colour_twins_take_their_rows_noise_and_their_term_is_in_g_loss(every):
  """With `loss.colour_twin_weight` the last row of every `gan.twin_every`
  shares z and the conditioning noise with the row before it: a batch whose
  twin rows repeat those rows gives a term of 0 up to rounding (about 1e-18 on
  an AMD EPYC, where XLA's vector code rounds identical rows apart; exactly 0
  on the Intel Xeon); on a batch of distinct rows the term is positive (above
  1e-4) and joins G's loss at the weight."""
  config = tiny.get_config()
  config.loss.colour_twin_weight = 5.0
  config.gan.twin_every = every
  models, mesh, init, step = build(config, jax.devices()[:1])
  batch = random_batch(config)
  rows = np.arange(8)
  rows[every - 1::every] -= 1
  twins = jax.tree.map(lambda x: x[rows], batch)
  _, m = host(step(init(jax.random.key(0)), parallel.global_batch(mesh, twins), KEY))
  assert 0.0 <= m["g_twin"] < 1e-12
  _, m = host(step(init(jax.random.key(0)), parallel.global_batch(mesh, batch), KEY))
  assert m["g_twin"] > 1e-4
  expected = (m["g_adv_0"] + m["g_adv_1"] + config.loss.stream_weight * m["g_stream"]
              + config.loss.kl_weight * m["g_kl"] + 5.0 * m["g_twin"])
  assert m["g_loss"] == pytest.approx(expected, rel=1e-6)
  # The conditioning noise, read back from c = mu + sigma * eps.
  sent = jax.random.normal(jax.random.key(1), (8, config.text.hidden_dim))
  module = ConditioningAugmentation(config.model.condition_dim, True)
  params = module.init({"params": jax.random.key(2), "noise": jax.random.key(3)}, sent)
  for twin_every in (every, 0):
    c, mu, logvar = module.apply(params, sent, twin_every=twin_every,
                                 rngs={"noise": jax.random.key(4)})
    eps = np.asarray((c - mu) / jnp.exp(0.5 * logvar))
    same = np.isclose(eps[every - 1::every], eps[every - 2::every], atol=1e-5).all(-1)
    assert same.all() if twin_every else not same.any()
    # and no other two rows alike
    assert len({tuple(np.round(r, 3)) for r in eps}) == 8 - (8 // every if twin_every else 0)


def edge_input(images):
  """`edge_channels` at the default gain, written out: the largest channel of
  each pixel's right (then lower) neighbour minus its own, 0 on the last
  column (row)."""
  m = images.max(-1)
  dx = jnp.zeros_like(m).at[:, :, :-1].set(m[:, :, 1:] - m[:, :, :-1])
  dy = jnp.zeros_like(m).at[:, :-1, :].set(m[:, 1:, :] - m[:, :-1, :])
  return jnp.concatenate([images, 30.0 * dx[..., None], 30.0 * dy[..., None]], -1)


@pytest.mark.parametrize("phase", ["stream", "damsm"])
def test_pretraining_steps_drop_a_nonfinite_update(config, phase):
  """The corrupt pixel above in a pretraining batch: the image encoder's
  BatchNorm variance overflows while the loss stays finite. The update is
  dropped (the state stays bit for bit) and reported; a good batch trains."""
  models = factory.create_models(config)
  init_fn, make_step = {
      "stream": (pretrain_steps.init_stream_state, pretrain_steps.make_stream_step),
      "damsm": (pretrain_steps.init_damsm_state, pretrain_steps.make_damsm_step)}[phase]
  before = host(jax.jit(lambda k: init_fn(models, config, k))(jax.random.key(0)))
  step = jax.jit(make_step(models, config))  # numpy in, numpy out: one compilation
  good = random_batch(config)
  good["class_ids"] = np.arange(config.batch_size, dtype=np.int32)  # DAMSM's; all distinct
  bad = {**good, "images": good["images"][:-1] + (good["images"][-1].copy(),)}
  bad["images"][-1][0, 0, 0, 0] = 1e22

  after, m = host(step(before, bad, KEY))
  assert all(np.isfinite(v) for v in m.values()), m
  assert_bitwise_equal(after, before)
  assert m["update_skipped"] == 1
  if phase == "damsm":
    assert (m["nonfinite_image"], m["nonfinite_text"]) == (1, 0)
  after, m = host(step(before, good, KEY))
  assert m["update_skipped"] == 0 and int(after.step) == 1
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(after),
                                                     jax.tree.leaves(before)))
