"""DAMSM losses against a numpy transcription of the official AttnGAN loop
(words_loss / sent_loss / func_attention: slice each caption to its length,
explicit softmaxes, -inf masks), in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mirrorgan_jax import damsm

B, T, H, W, D = 5, 7, 3, 3, 8
G1, G2, G3 = 4.0, 5.0, 10.0
RNG = np.random.default_rng(0)
LENGTHS = np.array([7, 3, 1, 5, 2], np.int32)
CLASS_IDS = np.array([1, 1, 2, 3, 1], np.int32)
VALID = np.arange(T)[None, :] < LENGTHS[:, None]
REGIONS = RNG.normal(size=(B, H, W, D)).astype(np.float32)
CODE = RNG.normal(size=(B, D)).astype(np.float32)
WORDS = (RNG.normal(size=(B, T, D)) * VALID[..., None]).astype(np.float32)
SENTENCE = RNG.normal(size=(B, D)).astype(np.float32)


# ----- numpy reference, following the official code literally ---------------

def np_softmax(x):  # nn.Softmax() on a 2-D tensor: over dim 1
  e = np.exp(x - x.max(axis=1, keepdims=True))
  return e / e.sum(axis=1, keepdims=True)


def np_cosine(x1, x2, eps=1e-8):  # losses.cosine_similarity, dim=1
  w12 = np.sum(x1 * x2, 1)
  return w12 / np.maximum(np.linalg.norm(x1, axis=1) * np.linalg.norm(x2, axis=1), eps)


def np_func_attention(query, context, gamma1):
  """query (b, ndf, queryL), context (b, ndf, ih, iw)."""
  b, query_len = query.shape[0], query.shape[2]
  ih, iw = context.shape[2], context.shape[3]
  source_len = ih * iw
  context = context.reshape(b, -1, source_len)
  context_t = context.transpose(0, 2, 1)
  attn = context_t @ query  # b x sourceL x queryL
  attn = np_softmax(attn.reshape(b * source_len, query_len))
  attn = attn.reshape(b, source_len, query_len).transpose(0, 2, 1)
  attn = np_softmax(attn.reshape(b * query_len, source_len) * gamma1)
  attn = attn.reshape(b, query_len, source_len)
  weighted = context @ attn.transpose(0, 2, 1)  # b x ndf x queryL
  return weighted, attn.reshape(b, -1, ih, iw)


def np_word_similarities(regions, words, lengths, gamma1, gamma2):
  """(Bi, Bc) before gamma3, plus the official att_maps (square case)."""
  img = np.asarray(regions, np.float64).transpose(0, 3, 1, 2)  # NCHW
  words = np.asarray(words, np.float64).transpose(0, 2, 1)  # b x nef x T
  n_img = img.shape[0]
  columns, att_maps = [], []
  for i in range(words.shape[0]):
    n = int(lengths[i])
    word = np.repeat(words[i:i + 1, :, :n], n_img, axis=0)
    wei_context, attn = np_func_attention(word, img, gamma1)
    if i < n_img:
      att_maps.append(attn[i])
    word = word.transpose(0, 2, 1).reshape(n_img * n, -1)
    wei_context = wei_context.transpose(0, 2, 1).reshape(n_img * n, -1)
    row_sim = np_cosine(word, wei_context).reshape(n_img, n)
    row_sim = np.log(np.exp(row_sim * gamma2).sum(axis=1, keepdims=True))
    columns.append(row_sim)
  return np.concatenate(columns, 1), att_maps


def np_masks(class_ids):
  masks = []
  for i in range(len(class_ids)):
    mask = (class_ids == class_ids[i]).astype(np.uint8)
    mask[i] = 0
    masks.append(mask.reshape((1, -1)))
  return np.concatenate(masks, 0).astype(bool)


def np_cross_entropy(logits):
  m = logits.max(axis=1, keepdims=True)
  logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
  return -np.mean(np.diag(logp))


def np_sentence_scores(cnn_code, rnn_code, eps=1e-8):
  cnn_code, rnn_code = np.asarray(cnn_code, np.float64), np.asarray(rnn_code, np.float64)
  norm0 = np.linalg.norm(cnn_code, axis=1)[:, None] * np.linalg.norm(rnn_code, axis=1)[None, :]
  return cnn_code @ rnn_code.T / np.maximum(norm0, eps)


def np_damsm(regions, code, words, sentence, lengths, class_ids):
  masks = np_masks(class_ids)
  sims = np_word_similarities(regions, words, lengths, G1, G2)[0] * G3
  sims[masks] = -np.inf
  scores = np_sentence_scores(code, sentence) * G3
  scores[masks] = -np.inf
  return {"w_loss0": np_cross_entropy(sims), "w_loss1": np_cross_entropy(sims.T),
          "s_loss0": np_cross_entropy(scores), "s_loss1": np_cross_entropy(scores.T)}


# ----- tests ----------------------------------------------------------------

def test_word_scores_match_the_official_loop():
  got = damsm.word_scores(REGIONS, WORDS, LENGTHS, G1, G2)
  expected, _ = np_word_similarities(REGIONS, WORDS, LENGTHS, G1, G2)
  assert got.shape == (B, B)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_word_scores_with_fewer_images_than_captions():
  got = damsm.word_scores(REGIONS[:2], WORDS, LENGTHS, G1, G2)
  expected, _ = np_word_similarities(REGIONS[:2], WORDS, LENGTHS, G1, G2)
  assert got.shape == (2, B)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_word_attention_matches_the_official_att_maps():
  got = np.asarray(damsm.word_attention(REGIONS, WORDS, LENGTHS, G1))
  _, att_maps = np_word_similarities(REGIONS, WORDS, LENGTHS, G1, G2)
  assert got.shape == (B, T, H, W)
  for i, n in enumerate(LENGTHS):
    np.testing.assert_allclose(got[i, :n], att_maps[i], rtol=1e-5, atol=1e-6)
    assert np.all(got[i, n:] == 0.0), f"caption {i} has attention on padding"


def test_word_features_past_a_caption_length_change_nothing():
  garbage = RNG.normal(size=WORDS.shape).astype(np.float32) * 100.0
  words2 = np.where(VALID[..., None], WORDS, garbage)
  for fn in (lambda w: damsm.word_scores(REGIONS, w, LENGTHS, G1, G2),
             lambda w: damsm.word_attention(REGIONS, w, LENGTHS, G1),
             lambda w: damsm.damsm_losses(REGIONS, CODE, w, SENTENCE, LENGTHS,
                                          CLASS_IDS, G1, G2, G3)["loss"]):
    np.testing.assert_array_equal(fn(words2), fn(WORDS))


def test_sentence_scores_are_eps_clamped_cosines():
  got = damsm.sentence_scores(CODE[:3], SENTENCE)
  assert got.shape == (3, B)
  np.testing.assert_allclose(got, np_sentence_scores(CODE[:3], SENTENCE),
                             rtol=1e-5, atol=1e-6)
  # A zero vector gives 0 (the clamp), not NaN.
  zero = damsm.sentence_scores(np.zeros((1, D), np.float32), SENTENCE)
  np.testing.assert_array_equal(zero, 0.0)
  # Tiny vectors: |x||y| = 1e-10 is clamped up to 1e-8, so cos(x, x) = 0.01.
  tiny = np.eye(2, D, dtype=np.float32) * 1e-5
  np.testing.assert_allclose(damsm.sentence_scores(tiny, tiny),
                             np.eye(2) * 0.01, rtol=1e-4, atol=1e-9)


def test_same_class_mask_is_off_diagonal_same_class():
  expected = np.array([[0, 1, 0, 0, 1],
                       [1, 0, 0, 0, 1],
                       [0, 0, 0, 0, 0],
                       [0, 0, 0, 0, 0],
                       [1, 1, 0, 0, 0]], bool)
  np.testing.assert_array_equal(damsm.same_class_mask(CLASS_IDS), expected)
  np.testing.assert_array_equal(np_masks(CLASS_IDS), expected)


def test_damsm_losses_match_the_official_computation():
  got = damsm.damsm_losses(REGIONS, CODE, WORDS, SENTENCE, LENGTHS, CLASS_IDS,
                           G1, G2, G3)
  expected = np_damsm(REGIONS, CODE, WORDS, SENTENCE, LENGTHS, CLASS_IDS)
  for k, v in expected.items():
    assert float(got[k]) == pytest.approx(v, rel=1e-5, abs=1e-5), k
  assert float(got["loss"]) == pytest.approx(sum(expected.values()), rel=1e-5)


def test_masked_pairs_do_not_affect_the_loss():
  mask = np.asarray(damsm.same_class_mask(CLASS_IDS))
  scores = RNG.normal(size=(B, B)).astype(np.float32) * G3
  base = damsm.matching_losses(scores, mask)
  moved = np.where(mask, scores + 50.0, scores)
  np.testing.assert_array_equal(damsm.matching_losses(moved, mask), base)
  # An unmasked wrong pair does count, in both directions.
  unmasked = scores.copy()
  unmasked[2, 3] += 50.0
  changed = damsm.matching_losses(unmasked, mask)
  assert float(changed[0]) > float(base[0]) and float(changed[1]) > float(base[1])


def test_matched_sentences_give_near_zero_loss_and_random_ones_log_b():
  ids = np.arange(B, dtype=np.int32)
  basis = np.eye(B, 16, dtype=np.float32) * 3.0  # orthogonal, not unit norm
  s0, s1 = damsm.matching_losses(G3 * damsm.sentence_scores(basis, basis),
                                 damsm.same_class_mask(ids))
  # Each row: -log(e^10 / (e^10 + 4)) ~ 4 e^-10.
  assert float(s0) < 1e-3 and float(s1) < 1e-3
  rng = np.random.default_rng(1)
  code, sent = rng.normal(size=(2, B, 4096)).astype(np.float32)
  r0, r1 = damsm.matching_losses(G3 * damsm.sentence_scores(code, sent),
                                 damsm.same_class_mask(ids))
  assert float(r0) == pytest.approx(np.log(B), abs=0.15)
  assert float(r1) == pytest.approx(np.log(B), abs=0.15)


def test_jit_matches_eager():
  args = (REGIONS, CODE, WORDS, SENTENCE, LENGTHS, CLASS_IDS)
  eager = damsm.damsm_losses(*args, G1, G2, G3)
  jitted = jax.jit(damsm.damsm_losses)(*args, G1, G2, G3)
  for k in eager:
    assert float(jitted[k]) == pytest.approx(float(eager[k]), rel=1e-5), k


def test_gradients_are_finite_and_padding_gets_none():
  def loss(regions, code, words, sentence):
    return damsm.damsm_losses(regions, code, words, sentence, LENGTHS,
                              CLASS_IDS, G1, G2, G3)["loss"]
  # Even NaN padding must not leak into any gradient.
  nan_padded = np.where(VALID[..., None], WORDS, np.nan).astype(np.float32)
  grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(REGIONS, CODE, nan_padded, SENTENCE)
  for g in grads:
    assert np.all(np.isfinite(g))
    assert np.any(g != 0.0)
  g_words = np.asarray(grads[2])
  assert np.all(g_words[~VALID] == 0.0)
  assert np.all(np.abs(g_words[VALID]).sum(-1) > 0.0)


def test_a_zero_vector_has_a_finite_gradient():
  # PyTorch's norm has gradient 0 at 0; a plain sqrt would give NaN.
  code = np.concatenate([np.zeros((1, D), np.float32), CODE[1:]])
  g = jax.grad(lambda c: damsm.sentence_scores(c, SENTENCE).sum())(code)
  assert np.all(np.isfinite(g))


# ----- DAMSM pretraining: schedule, clip, frozen backbones --------------------

def official_damsm_lr(base, epoch):
  """AttnGAN pretrain_DAMSM.py: each epoch re-creates Adam at `lr`; after it,
  `if lr > cfg.TRAIN.ENCODER_LR/10.: lr *= 0.98` (Python floats)."""
  lr = base
  for _ in range(epoch):
    if lr > base / 10.:
      lr *= 0.98
  return lr


def _birds_damsm():
  from configs import birds
  c = birds.get_config()
  assert (c.damsm.lr, c.damsm.lr_decay, c.damsm.min_lr_fraction) == (0.002, 0.98, 0.1)
  return c


def _adam_update_at(tx, grads, count):
  """`tx`'s update of `grads` from zero moments after `count` earlier updates."""
  import optax
  state = optax.tree_utils.tree_set(tx.init(grads), count=jnp.asarray(count, jnp.int32))
  return tx.update(grads, state, grads)[0]


def _hand_adam(grads, lr, count, b1, b2, eps=1e-8):
  t = count + 1
  m = (1 - b1) * grads / (1 - b1**t)
  v = (1 - b2) * grads**2 / (1 - b2**t)
  return -lr * m / (np.sqrt(v) + eps)


# The official loop stops after the multiplication that takes lr to or
# below ENCODER_LR / 10: after 114 epochs, at 0.002 * 0.98**114 ~ 1.99895e-4.
FLOOR_EPOCH = 114


def _check_lr(config, epochs_and_offsets):
  from mirrorgan_jax import pretrain_steps
  d = config.damsm
  schedule = pretrain_steps.damsm_schedule(config)
  text_tx, image_tx = pretrain_steps.damsm_optimizers(config)
  grads = np.array([0.01, -0.02, 0.005], np.float32)  # norm < 0.25: no clipping
  for epoch, offset in epochs_and_offsets:
    step = epoch * d.steps_per_epoch + offset
    want = official_damsm_lr(d.lr, epoch)
    # rel 1e-5: optax raises 0.98 to the epoch in float32 (2e-6 off at epoch 113).
    assert float(schedule(step)) == pytest.approx(want, rel=1e-5), (epoch, offset)
    for tx in (text_tx, image_tx):  # the rate the optimizers apply
      np.testing.assert_allclose(
          _adam_update_at(tx, jnp.asarray(grads), step),
          _hand_adam(grads.astype(np.float64), want, step, config.optim.b1, config.optim.b2),
          rtol=2e-5, err_msg=f"epoch {epoch}, step {step}")


def test_damsm_lr_decays_by_0_98_per_epoch_as_the_official_loop():
  """Constant within an epoch, x0.98 at each epoch boundary, down to the last
  epoch before the floor; in the schedule and in both optimizers' updates."""
  assert official_damsm_lr(0.002, FLOOR_EPOCH - 1) > 0.0002 >= official_damsm_lr(0.002, FLOOR_EPOCH)
  _check_lr(_birds_damsm(), [(0, 0), (0, 1), (0, 183), (1, 0), (1, 1), (1, 183), (2, 0),
                             (37, 91), (FLOOR_EPOCH - 1, 0), (FLOOR_EPOCH - 1, 183)])


def test_damsm_lr_past_the_floor_stays_at_the_official_last_value():
  _check_lr(_birds_damsm(), [(FLOOR_EPOCH, 0), (FLOOR_EPOCH, 100), (FLOOR_EPOCH + 1, 0),
                             (200, 0), (599, 183)])


# What these tests check is what the steps compute, not how fast: compiling
# without LLVM's optimisations takes a fraction of the CPU compile time.
_QUICK_COMPILE = {"xla_backend_optimization_level": 0,
                  "xla_llvm_disable_expensive_passes": True}


def _compiled(fn, *args):
  return jax.jit(fn).lower(*args).compile(compiler_options=_QUICK_COMPILE)


def _tiny_pretraining(kind):
  """(models, config, state, step, batch) for one pretraining phase at the
  tiny config, dropout off (the DAMSM loss is then a function of the
  parameters alone): the initial state and the compiled step."""
  from configs import tiny
  from mirrorgan_jax import factory, pretrain_steps
  from mirrorgan_jax.batch import random_batch
  c = tiny.get_config()
  c.text.dropout = 0.0
  models = factory.create_models(c)
  batch = random_batch(c)
  batch["class_ids"] = np.arange(c.batch_size, dtype=np.int32) % 3
  init = lambda k: getattr(pretrain_steps, f"init_{kind}_state")(models, c, k)  # noqa: E731
  key = jax.random.key(0)
  state = _compiled(init, key)(key)
  step = _compiled(getattr(pretrain_steps, f"make_{kind}_step")(models, c), state, batch, key)
  return models, c, state, step, batch


def _global_norm(tree):
  return float(np.sqrt(sum(np.sum(np.asarray(x, np.float64)**2) for x in jax.tree.leaves(tree))))


def test_damsm_step_clips_the_text_encoder_gradient_to_0_25_and_only_it():
  """The first Adam moment after one step is (1 - b1) * the gradient the
  optimizer saw: for the text encoder, the loss gradient rescaled to global
  norm 0.25 (computed here by hand); for the image encoder, the raw gradient."""
  import optax
  models, c, s0, step, batch = _tiny_pretraining("damsm")
  s1, metrics = step(s0, batch, jax.random.key(1))
  assert float(metrics["update_skipped"]) == 0.0

  def loss(text_params, image_params):
    words, sentence = models.text_encoder.apply(
        {"params": text_params}, batch["captions"], batch["caption_lens"])
    (regions, code), _ = models.image_encoder.apply(
        {"params": image_params, "batch_stats": s0.image.batch_stats},
        batch["images"][-1], train=True, mutable=["batch_stats"])
    d = c.damsm
    return damsm.damsm_losses(regions, code, words, sentence, batch["caption_lens"],
                              batch["class_ids"], d.gamma1, d.gamma2, d.gamma3)["loss"]

  args = (s0.text.params, s0.image.params)
  g_text, g_image = _compiled(jax.grad(loss, argnums=(0, 1)), *args)(*args)
  norm = _global_norm(g_text)
  assert norm > 4 * c.damsm.grad_clip  # far above the clip: the test can see it
  assert _global_norm(g_image) > 4 * c.damsm.grad_clip  # ... and would see a clip here

  b1 = c.optim.b1
  seen_text = jax.tree.map(lambda m: np.asarray(m) / (1 - b1),
                           optax.tree_utils.tree_get(s1.text.opt_state, "mu"))
  seen_image = jax.tree.map(lambda m: np.asarray(m) / (1 - b1),
                            optax.tree_utils.tree_get(s1.image.opt_state, "mu"))
  assert _global_norm(seen_text) == pytest.approx(c.damsm.grad_clip, rel=1e-5)
  jax.tree.map(lambda got, g: np.testing.assert_allclose(
      got, np.asarray(g, np.float64) * c.damsm.grad_clip / norm, rtol=1e-3, atol=1e-7),
      seen_text, g_text)
  jax.tree.map(lambda got, g: np.testing.assert_allclose(got, g, rtol=1e-3, atol=1e-6),
               seen_image, g_image)
  # The step's parameter update is Adam's first step on that clipped gradient.
  lr = c.damsm.lr
  jax.tree.map(lambda new, old, g: np.testing.assert_allclose(
      new, old - lr * g / (np.abs(g) + 1e-8), rtol=1e-5, atol=1e-7),
      s1.text.params, s0.text.params, seen_text)


@pytest.mark.parametrize("kind", ["damsm", "stream"])
def test_pretraining_leaves_a_frozen_trunk_bit_for_bit(monkeypatch, kind):
  """The steps' freezing, run with the small backbone declared frozen (the
  ImageNet trunks are far too slow to compile here; the next test ties them to
  the same mechanism): two steps leave its parameters bit for bit, give it no
  optimizer state, and train everything else."""
  from mirrorgan_jax import pretrain_steps
  table = {"damsm": "FROZEN_IMAGE_ENCODER", "stream": "FROZEN_CAPTION_ENCODER"}[kind]
  monkeypatch.setitem(getattr(pretrain_steps, table), "small", ("cnn",))
  _, _, s, step, batch = _tiny_pretraining(kind)
  s0 = jax.device_get(s)
  for i in range(2):
    s, metrics = step(s, batch, jax.random.key(i))
    assert float(metrics["update_skipped"]) == 0.0
  s = jax.device_get(s)
  if kind == "damsm":
    net0, net, frozen = s0.image, s.image, lambda p: p["cnn"]  # noqa: E731
    trained = lambda p: {k: v for k, v in p.items() if k != "cnn"}  # noqa: E731
  else:
    net0, net, frozen = s0.net, s.net, lambda p: p["encoder"]["cnn"]  # noqa: E731
    trained = lambda p: {"encoder": {k: v for k, v in p["encoder"].items() if k != "cnn"},  # noqa: E731
                         "decoder": p["decoder"]}
  assert jax.tree.leaves(frozen(net.params))
  jax.tree.map(np.testing.assert_array_equal, frozen(net.params), frozen(net0.params))
  for old, new in zip(jax.tree.leaves(trained(net0.params)), jax.tree.leaves(trained(net.params))):
    assert not np.array_equal(old, new)
  assert "'cnn'" not in str(jax.tree_util.tree_structure(net.opt_state))


def _passed_through(fn, first_arg, *args) -> tuple[list[str], set[str]]:
  """Traces `fn(first_arg, *args)`: (the keystr paths of its output's leaves,
  those of them that are, in the traced program, the very leaf of `first_arg`
  at the same path, i.e. returned untouched, bit for bit)."""
  closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(first_arg, *args)
  in_vars = dict(zip((jax.tree_util.keystr(p) for p, _ in
                      jax.tree_util.tree_flatten_with_path((first_arg, *args))[0]),
                     closed.jaxpr.invars))
  out_paths = [jax.tree_util.keystr(p) for p, _ in
               jax.tree_util.tree_flatten_with_path(out_shape)[0]]
  return out_paths, {p for p, v in zip(out_paths, closed.jaxpr.outvars)
                     if in_vars.get("[0]" + p) is v}


IMAGENET_TRUNKS = {
    # phase: (trunk module, its parent in the params, trained parts of that parent)
    "damsm": ("inception", lambda s: s.image.params, {"emb_features", "emb_cnn_code"}),
    "stream": ("resnet", lambda s: s.net.params["encoder"], {"linear", "bn"}),
}


@pytest.mark.parametrize("kind", ["damsm", "stream"])
def test_imagenet_trunks_are_frozen_whole_and_passed_through(kind):
  """Inception-v3 (DAMSM) and ResNet-152 (STREAM), traced, not compiled: the
  optimizer holds state for the projections (and STREAM's BatchNorm) only, the
  step returns the trunk's parameters as the very input arrays (bit for bit),
  and a training-mode forward returns the trunk's BatchNorm statistics as they
  went in (ImageNet statistics, never updated)."""
  import optax
  from configs import tiny
  from mirrorgan_jax import factory, pretrain_steps
  from mirrorgan_jax.batch import random_batch
  c = tiny.get_config()
  c.image_encoder.backbone, c.image_encoder.image_size = "inception_v3", 75
  c.stream.backbone, c.stream.image_size = "resnet152", 32
  models = factory.create_models(c)
  batch = random_batch(c)
  batch["class_ids"] = np.arange(c.batch_size, dtype=np.int32)
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), batch)
  key = jax.random.key(0)
  trunk, parent, trained = IMAGENET_TRUNKS[kind]
  state = jax.eval_shape(
      lambda k: getattr(pretrain_steps, f"init_{kind}_state")(models, c, k), key)
  assert len(jax.tree.leaves(parent(state)[trunk])) > 100
  net = state.image if kind == "damsm" else state.net
  mu = optax.tree_utils.tree_get(net.opt_state, "mu")
  assert set(mu if kind == "damsm" else mu["encoder"]) == trained

  step = getattr(pretrain_steps, f"make_{kind}_step")(models, c)
  out_paths, passed = _passed_through(lambda s, b, k: step(s, b, k)[0], state, abstract, key)
  trunk_params = [p for p in out_paths if f"['{trunk}']" in p and ".params" in p]
  assert trunk_params and set(trunk_params) <= passed
  # Not vacuous: what trains is not passed through.
  assert not any(f"['{name}']" in p for p in passed for name in trained)

  variables = {"params": net.params, "batch_stats": net.batch_stats}
  if kind == "damsm":
    forward = lambda v, x: models.image_encoder.apply(  # noqa: E731
        v, x, train=True, mutable=["batch_stats"])[1]
  else:
    forward = lambda v, x: models.captioner.apply(  # noqa: E731
        v, x, jnp.asarray(batch["captions"]), train=True, mutable=["batch_stats"])[1]
  out_paths, passed = _passed_through(forward, variables, abstract["images"][-1])
  trunk_stats = [p for p in out_paths if f"['{trunk}']" in p]
  assert trunk_stats and set(trunk_stats) <= passed
  if kind == "stream":  # not vacuous: the trained BatchNorm ('bn') does move
    assert any("['bn']" in p for p in set(out_paths) - passed)
