"""One MirrorGAN training iteration as a pure function, in the official order:

1. the frozen STEM encodes the captions (and the mismatched captions);
2. one generator forward with z and conditioning-augmentation noise drawn from
   the step's key, `fold_in(key, step)` (where `loss.colour_twin_weight` is
   set, a deviation, each colour twin takes its row's);
3. each discriminator is updated on the detached fakes (and, where
   `loss.negative_weight` is set, a deviation, on blurred real images too;
   where `loss.edge_d_weight` is set, a deviation, so is the edge critic);
4. the generator loss is computed through the *updated* discriminators plus the
   frozen STREAM captioner's cross-entropy and the KL term (and, where
   `loss.damsm_weight` is set, a deviation, AttnGAN's DAMSM matching losses;
   the edge critic's adversarial term counts `loss.edge_d_weight` times; the
   colour twins' coverage term `loss.colour_twin_weight` times);
5. one generator update, then the EMA of its parameters;
6. each network's update is kept only if it is finite: a non-finite loss,
   gradient or new state (parameters, Adam moments, BatchNorm statistics) of a
   network drops that network's update, leaving it bit for bit as it was, and
   the metrics say which. A D's verdict comes before G's pass, so G meets a D
   whose update was dropped as it was; the step count and G's EMA move with G.
   Finite losses do not imply a finite update (a BatchNorm variance or an Adam
   second moment that overflows float32, 0 * inf in a backward pass). As
   PyTorch's GradScaler skips each optimizer's step on its own.

Each verdict is known before its network is written, and the update then
overwrites the donated state in place (`_commit`): no second copy of any
network or its moments is held (birds, batch 2: XLA's plan 2.6 GiB of
temporaries when selecting between two finished states, 1.8 GiB with one
verdict for the whole iteration, 1.35 GiB now; docs/benchmarks.md).

The generator runs forward once: `jax.vjp` keeps its residuals, the fakes feed
the D updates, and the G loss's gradient with respect to the fakes is pulled
back through the same forward (as PyTorch's single forward + backward), so G's
BatchNorm statistics are updated exactly once per iteration.
"""

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from mirrorgan_jax import damsm, losses, negatives
from mirrorgan_jax.factory import Models
from mirrorgan_jax.gan_state import GANState, NetState, all_finite
from mirrorgan_jax.models.generator import twin_sources
from mirrorgan_jax.models.text_encoder import padding_mask

Batch = dict
Metrics = dict


def encode_text(models: Models, params, captions, lengths):
  """Frozen STEM (dropout off): (words (B,T,nef), sentence (B,nef)), no gradient."""
  words, sentence = models.text_encoder.apply({"params": params}, captions, lengths)
  return jax.lax.stop_gradient(words), jax.lax.stop_gradient(sentence)


def _updated(net: NetState, grads, batch_stats, tx) -> NetState:
  """The network after one optimizer step."""
  updates, opt_state = tx.update(grads, net.opt_state, net.params)
  return NetState(optax.apply_updates(net.params, updates), batch_stats, opt_state)


def _select(ok: jax.Array, new, old):
  """`new` where the bool scalar `ok` holds, else `old`, leaf by leaf: each
  select fuses into the computation of its new leaf, which then overwrites the
  old one in place (a `lax.cond` over the tree returns a fresh copy)."""
  return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)


def _commit(net: NetState, grads, batch_stats, tx, finite_loss: jax.Array):
  """(the network after its update if the update and `finite_loss` are finite,
  else `net` bit for bit; that verdict). No second copy of the network or its
  moments is held: the verdict reads the new state through reductions alone,
  and the update, computed again once it is known, overwrites the donated state
  in place, parameters first (they read the old moments), then the moments.
  Without the barriers XLA fuses the moments' update into the parameters' and
  copies every old moment to keep it for both (docs/benchmarks.md)."""
  ok = finite_loss & all_finite(grads, _updated(net, grads, batch_stats, tx))
  ok, grads = jax.lax.optimization_barrier((ok, grads))
  updates, _ = tx.update(grads, net.opt_state, net.params)
  params = _select(ok, optax.apply_updates(net.params, updates), net.params)
  params, opt_state, grads = jax.lax.optimization_barrier((params, net.opt_state, grads))
  _, new_opt_state = tx.update(grads, opt_state)  # Adam: the parameters are not read
  return NetState(params, _select(ok, batch_stats, net.batch_stats),
                  _select(ok, new_opt_state, opt_state)), ok


def _coverages(intermediates) -> tuple:
  """Each stage's image-head coverages (B, H, W, sub-pixels), first stage first."""
  heads = sorted((k for k in intermediates if k.startswith("img_net")), key=lambda k: int(k[7:]))
  return tuple(intermediates[k]["coverage"][0] for k in heads)


def make_train_step(models: Models, config) -> Callable[[GANState, Batch, jax.Array],
                                                         tuple[GANState, Metrics]]:
  """Returns `train_step(state, batch, key) -> (state, metrics)`.

  batch: 'images' (a tuple with one (B, S, S, 3) array per stage, in [-1, 1]),
  'captions' (B, T) int32, 'caption_lens' (B,) int32 and, optionally,
  'wrong_captions' / 'wrong_caption_lens' for the mismatched-pair term
  (without them each image is paired with the next caption of the batch).

  metrics: the losses and their terms, and 0/1 flags 'nonfinite_g',
  'nonfinite_d_<i>' (that network's update was not finite and was dropped) and
  'update_skipped' (some network's update was dropped).
  """
  stream_weight = float(config.loss.stream_weight)
  kl_weight = float(config.loss.kl_weight)
  ema_decay = float(config.ema_decay)
  z_dim = config.model.z_dim
  negative_weight = float(config.loss.negative_weight)
  negative_min_share = float(config.loss.negative_min_share)
  damsm_weight = float(config.loss.get("damsm_weight", 0.0))
  edge_d_weight = float(config.loss.get("edge_d_weight", 0.0))
  twin_weight = float(config.loss.get("colour_twin_weight", 0.0))
  twin_every = int(config.gan.get("twin_every", 2)) if twin_weight else 0
  gammas = (config.damsm.gamma1, config.damsm.gamma2, config.damsm.gamma3)

  def train_step(state: GANState, batch: Batch, key: jax.Array):
    key = jax.random.fold_in(key, state.step)
    z_key, noise_key = jax.random.split(key)
    neg_key = jax.random.fold_in(key, 1)  # used only with negatives
    captions, lengths = batch["captions"], batch["caption_lens"]
    mask = padding_mask(lengths, captions.shape[1])
    # The named scopes tag the compiled ops by part of the iteration, for
    # profiles (benchmarks/step_parts.py); they change no result.
    with jax.named_scope("text"):
      words, sentence = encode_text(models, state.text_encoder, captions, lengths)
      if "wrong_captions" in batch:
        _, wrong_sentence = encode_text(models, state.text_encoder,
                                        batch["wrong_captions"], batch["wrong_caption_lens"])
      else:
        wrong_sentence = jnp.roll(sentence, -1, axis=0)
    z = jax.random.normal(z_key, (captions.shape[0], z_dim))
    if twin_every:  # A deviation, off in birds/coco: a colour twin takes its row's noise.
      z = z[twin_sources(captions.shape[0], twin_every)]

    def g_forward(g_params):
      (images, _, mu, logvar), new_vars = models.generator.apply(
          {"params": g_params, "batch_stats": state.g.batch_stats},
          z, sentence, words, mask, train=True, rngs={"noise": noise_key},
          twin_every=twin_every,
          mutable=["batch_stats", "intermediates"] if twin_weight else ["batch_stats"])
      coverage = (_coverages(new_vars["intermediates"]) if twin_weight else ())
      return (images, mu, logvar, coverage), new_vars["batch_stats"]

    with jax.named_scope("g_forward"):
      (fakes, mu, logvar, coverage), g_vjp, g_batch_stats = jax.vjp(
          g_forward, state.g.params, has_aux=True)

    # One D per stage, then (a deviation, off in birds/coco) the edge critic at
    # the last scale: (metric suffix, module, state, stage it judges, G's weight).
    critics = [(str(i), disc, d, i, 1.0)
               for i, (disc, d) in enumerate(zip(models.discriminators, state.d))]
    if models.edge_discriminator is not None:
      critics.append(("edge", models.edge_discriminator, state.edge_d, len(fakes) - 1,
                      edge_d_weight))

    metrics = {}
    d_new, d_ok = [], []
    for k, (name, disc, d, i, _) in enumerate(critics):
      real, fake = batch["images"][i], jax.lax.stop_gradient(fakes[i])
      # A deviation, off in birds/coco: blurred real images as a further fake.
      negative = (negatives.blurred(real, jax.random.fold_in(neg_key, k), negative_min_share)
                  if negative_weight else None)

      def d_loss_fn(params, disc=disc, d=d, real=real, fake=fake, negative=negative):
        logits, new_vars = disc.apply(
            {"params": params, "batch_stats": d.batch_stats}, real, fake, sentence,
            wrong_sentence, negative, method="discriminate", mutable=["batch_stats"])
        loss, terms = losses.discriminator_loss(logits, negative_weight)
        return loss, (terms, new_vars["batch_stats"])

      with jax.named_scope(f"d_update_{name}"):
        (d_loss, (terms, d_stats)), grads = jax.value_and_grad(
            d_loss_fn, has_aux=True)(d.params)
        # A D whose update is not finite meets G as it was.
        new, ok = _commit(d, grads, d_stats, models.d_tx, all_finite(d_loss, terms))
      d_new.append(new)
      d_ok.append(ok)
      metrics[f"d_loss_{name}"] = d_loss
      metrics.update({f"d_{t}_{name}": v for t, v in terms.items()})

    def g_loss_fn(fakes, mu, logvar, coverage):
      total, d_stats, terms = 0.0, [], {}
      for (name, disc, _, i, weight), d in zip(critics, d_new):
        (uncond, cond), new_vars = disc.apply(
            {"params": d.params, "batch_stats": d.batch_stats}, fakes[i], sentence,
            mutable=["batch_stats"])
        terms[f"g_adv_{name}"] = losses.generator_adversarial_loss(uncond, cond)
        total = total + weight * terms[f"g_adv_{name}"]
        d_stats.append(new_vars["batch_stats"])
      cap_logits = models.captioner.apply(state.stream, fakes[-1], captions)
      terms["g_stream"] = losses.caption_loss(cap_logits, captions, lengths)
      terms["g_kl"] = losses.kl_loss(mu, logvar)
      total = total + stream_weight * terms["g_stream"] + kl_weight * terms["g_kl"]
      if damsm_weight:  # A deviation, off in birds/coco: AttnGAN's DAMSM term.
        regions, code = models.image_encoder.apply(state.image_encoder, fakes[-1],
                                                   train=False)
        terms["g_damsm"] = damsm.damsm_losses(
            regions, code, words, sentence, lengths,
            batch.get("class_ids", jnp.arange(captions.shape[0])), *gammas)["loss"]
        total = total + damsm_weight * terms["g_damsm"]
      if twin_weight:  # A deviation, off in birds/coco: see colour_twin_loss.
        terms["g_twin"] = losses.colour_twin_loss(coverage, twin_every)
        total = total + twin_weight * terms["g_twin"]
      return total, (terms, d_stats)

    with jax.named_scope("g_loss"):
      (g_loss, (g_terms, d_stats)), cotangents = jax.value_and_grad(
          g_loss_fn, argnums=(0, 1, 2, 3), has_aux=True)(fakes, mu, logvar, coverage)
    with jax.named_scope("g_backward"):
      (g_grads,) = g_vjp(cotangents)
    # The G pass runs the discriminators in training mode too, which moves
    # their running statistics, as the official code.
    # A D whose update was dropped keeps these too: it stays as it was.
    d_ok = [ok & all_finite(stats) for ok, stats in zip(d_ok, d_stats)]
    d_new = [d.replace(batch_stats=_select(ok, stats, d.batch_stats))
             for d, stats, ok in zip(d_new, d_stats, d_ok)]
    with jax.named_scope("g_update"):
      g, g_ok = _commit(state.g, g_grads, g_batch_stats, models.g_tx,
                        all_finite(g_loss, g_terms))
      g_ema = _select(g_ok, jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p,
                                         state.g_ema, g.params), state.g_ema)

    metrics.update(g_terms)
    metrics["g_loss"] = g_loss
    # The official sum over the stages' Ds (the edge critic's is d_loss_edge).
    metrics["d_loss"] = sum(metrics[f"d_loss_{i}"] for i in range(len(state.d)))
    flag = lambda b: (~b).astype(jnp.float32)  # noqa: E731
    metrics["nonfinite_g"] = flag(g_ok)
    metrics.update({f"nonfinite_d_{c[0]}": flag(b) for c, b in zip(critics, d_ok)})
    metrics["update_skipped"] = flag(functools.reduce(jnp.logical_and, d_ok, g_ok))
    step = jnp.where(g_ok, state.step + 1, state.step)
    n = len(state.d)  # the stages' Ds come first in `critics`, the edge critic last
    edge_d = d_new[n] if models.edge_discriminator is not None else state.edge_d
    return state.replace(step=step, g=g, g_ema=g_ema, d=tuple(d_new[:n]), edge_d=edge_d), metrics

  return train_step
