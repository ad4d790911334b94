"""The two pretraining phases as pure steps `(state, batch, key) -> (state, metrics)`.

damsm: STEM (the text encoder) and the DAMSM image encoder, trained with the
word and sentence matching losses (AttnGAN `pretrain_DAMSM.py`): Adam 0.002,
betas (0.5, 0.999), the learning rate times 0.98 per epoch down to a tenth,
gradient-norm clip 0.25 on the text encoder only, same-class pairs masked. The
ImageNet Inception-v3 stays frozen (only the two projections train); the small
backbone trains whole. Deviations: AttnGAN re-creates Adam every epoch (its
moments restart); we keep them. Its Inception runs BatchNorm in training mode;
ours keeps the ImageNet statistics. Images are the largest stage of the
pipeline (256 crop), resized to 299 by the encoder, instead of a 299 crop of 355.
Where `damsm.function_word_*` are set (a deviation, shapes only), the captions'
words that name no attribute are noised first (`caption_noise`).

stream: the STREAM captioner on real images and their captions, teacher-forced
cross-entropy (the image-captioning code the MirrorGAN README points to: Adam
1e-3; the frozen ImageNet ResNet-152 with only the projection, BatchNorm and
decoder trained, or the small CNN trained whole).

Both steps drop an update that is not finite (gradient, parameters, Adam
moments or BatchNorm statistics), as the GAN step drops a network's: the state
stays bit for bit, `step` included, and the metric 'update_skipped' is 1.
"""

from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax

from mirrorgan_jax import caption_noise, damsm, losses, param_groups
from mirrorgan_jax.factory import Models
from mirrorgan_jax.gan_state import NetState, all_finite, example_inputs, where_tree

FROZEN_IMAGE_ENCODER = {"inception_v3": ("inception",), "small": ()}
FROZEN_CAPTION_ENCODER = {"resnet152": ("resnet",), "small": ()}


@flax.struct.dataclass
class DamsmState:
  step: jax.Array
  text: NetState
  image: NetState


@flax.struct.dataclass
class StreamState:
  step: jax.Array
  net: NetState  # params of the whole captioner; opt_state of its trained part


def damsm_schedule(config) -> optax.Schedule:
  """AttnGAN's rule: after each epoch, `if lr > ENCODER_LR / 10: lr *= 0.98`.
  Its last multiplication takes lr just below the floor (0.002 * 0.98**114 for
  birds), where it stays."""
  d = config.damsm
  floor, lr = d.lr * d.min_lr_fraction, d.lr
  while lr > floor and d.lr_decay < 1.0:  # the official loop, in Python floats
    lr *= d.lr_decay
  return optax.exponential_decay(d.lr, transition_steps=d.steps_per_epoch,
                                 decay_rate=d.lr_decay, staircase=True,
                                 end_value=lr if d.lr_decay < 1.0 else None)


def damsm_optimizers(config) -> tuple[optax.GradientTransformation, ...]:
  """(text, image): one Adam over both in AttnGAN, equal to two (Adam is per
  parameter); the clip covers the text encoder alone, as `clip_grad_norm` on
  the RNN's parameters."""
  adam = optax.adam(damsm_schedule(config), b1=config.optim.b1, b2=config.optim.b2)
  return optax.chain(optax.clip_by_global_norm(config.damsm.grad_clip), adam), adam


def _image_encoder_frozen(config):
  return FROZEN_IMAGE_ENCODER[config.image_encoder.backbone]


def _caption_encoder_frozen(config):
  return FROZEN_CAPTION_ENCODER[config.stream.backbone]


def init_damsm_state(models: Models, config, key) -> DamsmState:
  x = example_inputs(config)
  k_text, k_image = jax.random.split(key)
  text_tx, image_tx = damsm_optimizers(config)
  text = models.text_encoder.init(k_text, x["captions"], x["lengths"])["params"]
  image = models.image_encoder.init(k_image, x["images"][-1])
  trained, _ = param_groups.split(image["params"], _image_encoder_frozen(config))
  return DamsmState(
      step=jnp.zeros((), jnp.int32),
      text=NetState(text, {}, text_tx.init(text)),
      image=NetState(image["params"], image.get("batch_stats", {}), image_tx.init(trained)))


def damsm_losses(models: Models, config, text_params, image_vars, batch, *, train: bool,
                 dropout_key=None):
  """The DAMSM losses of a batch, and the image encoder's new BatchNorm statistics."""
  d = config.damsm
  words, sentence = models.text_encoder.apply(
      {"params": text_params}, batch["captions"], batch["caption_lens"],
      deterministic=not train, rngs={"dropout": dropout_key} if train else None)
  (regions, code), new_vars = models.image_encoder.apply(
      image_vars, batch["images"][-1], train=train, mutable=["batch_stats"])
  terms = damsm.damsm_losses(regions, code, words, sentence, batch["caption_lens"],
                             batch["class_ids"], d.gamma1, d.gamma2, d.gamma3)
  return terms, new_vars.get("batch_stats", {})


def function_word_rates(config) -> tuple[float, float, float]:
  """(swap, drop, insert) of `damsm.function_word_*`; 0 (official) where absent."""
  return tuple(float(config.damsm.get(f"function_word_{k}", 0.0))
               for k in ("swap", "drop", "insert"))


def make_damsm_step(models: Models, config) -> Callable:
  text_tx, image_tx = damsm_optimizers(config)
  frozen = _image_encoder_frozen(config)
  schedule = damsm_schedule(config)
  rates = function_word_rates(config)
  function = caption_noise.function_words(config.text.vocab_size) if any(rates) else None

  def step(state: DamsmState, batch, key):
    key = jax.random.fold_in(key, state.step)
    held = param_groups.split(state.image.params, frozen)[1]
    if function is not None:  # A deviation, shapes only: see caption_noise.
      captions, lengths = caption_noise.noise(batch["captions"], batch["caption_lens"],
                                              jax.random.fold_in(key, 1), function, *rates)
      batch = {**batch, "captions": captions, "caption_lens": lengths}

    def loss_fn(text_params, image_trained):
      variables = {"params": param_groups.merge(image_trained, held),
                   "batch_stats": state.image.batch_stats}
      terms, stats = damsm_losses(models, config, text_params, variables, batch,
                                  train=True, dropout_key=key)
      return terms["loss"], (terms, stats)

    trained = param_groups.split(state.image.params, frozen)[0]
    (_, (terms, stats)), (g_text, g_image) = jax.value_and_grad(
        loss_fn, argnums=(0, 1), has_aux=True)(state.text.params, trained)
    up, text_opt = text_tx.update(g_text, state.text.opt_state, state.text.params)
    text = NetState(optax.apply_updates(state.text.params, up), {}, text_opt)
    up, image_opt = image_tx.update(g_image, state.image.opt_state, trained)
    image = (optax.apply_updates(trained, up), stats, image_opt)
    text_ok, image_ok = all_finite(g_text, text), all_finite(g_image, image)
    ok = text_ok & image_ok
    # The frozen backbone is neither checked nor copied: it does not change.
    step, text, image = where_tree(
        ok, (state.step + 1, text, image),
        (state.step, state.text, (trained, state.image.batch_stats, state.image.opt_state)))
    image = NetState(param_groups.merge(image[0], held), image[1], image[2])
    metrics = {f"damsm_{k}": v for k, v in terms.items()}
    metrics["damsm_lr"] = schedule(state.step)
    metrics["nonfinite_text"] = (~text_ok).astype(jnp.float32)
    metrics["nonfinite_image"] = (~image_ok).astype(jnp.float32)
    metrics["update_skipped"] = (~ok).astype(jnp.float32)
    return DamsmState(step, text, image), metrics

  return step


def make_damsm_eval(models: Models, config) -> Callable:
  """(state, batch) -> DAMSM losses without dropout, with running statistics."""

  def evaluate(state: DamsmState, batch):
    variables = {"params": state.image.params, "batch_stats": state.image.batch_stats}
    terms, _ = damsm_losses(models, config, state.text.params, variables, batch, train=False)
    return {f"damsm_{k}": v for k, v in terms.items()}

  return evaluate


def stream_optimizer(config) -> optax.GradientTransformation:
  return optax.adam(config.stream.lr, b1=config.stream.b1, b2=config.stream.b2)


def init_stream_state(models: Models, config, key) -> StreamState:
  x = example_inputs(config)
  variables = models.captioner.init(key, x["images"][-1], x["captions"])
  trained, _ = _split_captioner(variables["params"], _caption_encoder_frozen(config))
  opt = stream_optimizer(config).init(trained)
  return StreamState(jnp.zeros((), jnp.int32),
                     NetState(variables["params"], variables["batch_stats"], opt))


def _split_captioner(params, frozen):
  enc_trained, enc_held = param_groups.split(params["encoder"], frozen)
  return {"encoder": enc_trained, "decoder": params["decoder"]}, enc_held


def _merge_captioner(trained, enc_held):
  return {"encoder": param_groups.merge(trained["encoder"], enc_held),
          "decoder": trained["decoder"]}


def stream_loss(models: Models, variables, batch, *, train: bool):
  images = batch["images"][-1]
  if train:
    logits, new_vars = models.captioner.apply(variables, images, batch["captions"],
                                              train=True, mutable=["batch_stats"])
  else:
    logits, new_vars = models.captioner.apply(variables, images, batch["captions"]), {}
  loss = losses.caption_loss(logits, batch["captions"], batch["caption_lens"])
  return loss, new_vars.get("batch_stats", variables.get("batch_stats", {}))


def make_stream_step(models: Models, config) -> Callable:
  tx = stream_optimizer(config)
  frozen = _caption_encoder_frozen(config)

  def step(state: StreamState, batch, key):
    del key  # no randomness in STREAM pretraining beyond the data
    trained, held = _split_captioner(state.net.params, frozen)

    def loss_fn(trained):
      variables = {"params": _merge_captioner(trained, held),
                   "batch_stats": state.net.batch_stats}
      return stream_loss(models, variables, batch, train=True)

    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(trained)
    updates, opt = tx.update(grads, state.net.opt_state, trained)
    new = (state.step + 1, optax.apply_updates(trained, updates), stats, opt)
    ok = all_finite(grads, new)
    step, trained, stats, opt = where_tree(
        ok, new, (state.step, trained, state.net.batch_stats, state.net.opt_state))
    params = _merge_captioner(trained, held)
    return StreamState(step, NetState(params, stats, opt)), {
        "stream_loss": loss, "update_skipped": (~ok).astype(jnp.float32)}

  return step


def make_stream_eval(models: Models, config) -> Callable:
  del config

  def evaluate(state: StreamState, batch):
    variables = {"params": state.net.params, "batch_stats": state.net.batch_stats}
    return {"stream_loss": stream_loss(models, variables, batch, train=False)[0]}

  return evaluate
