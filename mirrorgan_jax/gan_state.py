"""The whole state of MirrorGAN training as one pytree, its initialisation, and
the finiteness check and select the steps use to drop a non-finite update."""

import collections
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from mirrorgan_jax.config_check import stage_sizes
from mirrorgan_jax.factory import Models

PyTree = Any


@flax.struct.dataclass
class NetState:
  """A trained network: parameters, BatchNorm statistics, optimizer state."""
  params: PyTree
  batch_stats: PyTree
  opt_state: PyTree


@flax.struct.dataclass
class GANState:
  step: jax.Array  # int32 scalar: G updates done
  g: NetState
  g_ema: PyTree  # EMA of G's parameters (BatchNorm statistics are not averaged)
  d: tuple[NetState, ...]  # one per stage
  text_encoder: PyTree  # frozen STEM parameters
  stream: PyTree  # frozen STREAM variables {'params', 'batch_stats'}
  # frozen DAMSM image encoder variables for `loss.damsm_weight`; {} without it
  image_encoder: PyTree = flax.struct.field(default_factory=dict)
  # BatchNorm statistics of the EMA generator itself for `gan.ema_bn_batches`
  # (refreshed by the trainer before each checkpoint and sample; the step
  # never reads them); {} without it: sampling uses the live G's (official).
  g_ema_stats: PyTree = flax.struct.field(default_factory=dict)
  # The edge critic's NetState for `loss.edge_d_weight` (a D at the last
  # scale, not one of the per-stage ones); {} without it (official).
  edge_d: PyTree = flax.struct.field(default_factory=dict)


def all_finite(*trees) -> jax.Array:
  """A bool scalar: every floating-point leaf of `trees` is finite.

  One reduction per shape, not per leaf: leaves of one shape and dtype are
  folded as `a + 0 * b + 0 * c ...`, which is finite exactly when each of them
  is (0 * inf and 0 * nan are nan; 0 * a finite value is 0). A parameter, its
  gradient and its new Adam moments then share one reduction. On CPU each
  reduction compiles to kernels of its own: per leaf, the birds step held 6,694
  fusions, a quarter of them these checks (docs/benchmarks.md)."""
  groups = collections.defaultdict(list)
  for t in trees:
    for x in jax.tree.leaves(t):
      if jnp.issubdtype(x.dtype, jnp.inexact):
        groups[(jnp.shape(x), x.dtype)].append(x)
  checks = [jnp.isfinite(functools.reduce(lambda a, b: a + 0 * b, xs)).all()
            for xs in groups.values()]
  return functools.reduce(jnp.logical_and, checks, jnp.array(True))


def where_tree(ok: jax.Array, new: PyTree, old: PyTree) -> PyTree:
  """`new` if the bool scalar `ok` holds, else `old`, bit for bit. One
  `lax.cond` over the whole tree, not a `where` per leaf: the same result,
  and XLA compiles the tiny GAN step in about 23 s instead of 43 s on CPU
  (docs/benchmarks.md)."""
  return jax.lax.cond(ok, lambda: new, lambda: old)


def example_inputs(config, batch: int = 2) -> dict:
  """Zero inputs of the right shapes and dtypes, for init and eval_shape."""
  t = config.text.words_num
  return {
      "z": jnp.zeros((batch, config.model.z_dim)),
      "sentence": jnp.zeros((batch, config.text.hidden_dim)),
      "words": jnp.zeros((batch, t, config.text.hidden_dim)),
      "mask": jnp.zeros((batch, t), bool),
      "captions": jnp.ones((batch, t), jnp.int32),
      "lengths": jnp.full((batch,), t, jnp.int32),
      "images": tuple(jnp.zeros((batch, s, s, 3)) for s in stage_sizes(config)),
  }


def _net_state(variables, tx) -> NetState:
  params = variables["params"]
  return NetState(params, variables.get("batch_stats", {}), tx.init(params))


def uses_damsm_loss(config) -> bool:
  return bool(config.loss.get("damsm_weight", 0.0))


def damsm_image_variables(config, damsm_state) -> PyTree:
  """What the gan state keeps of a DAMSM phase's image encoder: its variables
  where `loss.damsm_weight` asks for them, else nothing."""
  if not uses_damsm_loss(config):
    return {}
  return {"params": damsm_state.image.params, "batch_stats": damsm_state.image.batch_stats}


def uses_ema_stats(config) -> bool:
  """Whether the EMA generator keeps BatchNorm statistics of its own."""
  return int(config.gan.get("ema_bn_batches", 0)) > 0


def init_gan_state(models: Models, config, key: jax.Array,
                   pretrained: tuple[PyTree, PyTree, PyTree] | None = None) -> GANState:
  """All networks from one key. STEM, STREAM and (for `loss.damsm_weight`)
  DAMSM's image encoder start random here, unless `pretrained` gives them
  (text encoder params, STREAM variables, image encoder variables or {}): the
  trainer passes the pretraining phases' ones, so that nothing is initialised
  only to be replaced (for birds, a random ResNet-152). G and the Ds are the
  same either way."""
  x = example_inputs(config)
  k_text, k_g, k_noise, k_stream, k_d = jax.random.split(key, 5)
  g = models.generator.init({"params": k_g, "noise": k_noise}, x["z"], x["sentence"],
                            x["words"], x["mask"])
  ds = tuple(
      _net_state(d.init(k, img, x["sentence"]), models.d_tx)
      for d, k, img in zip(models.discriminators,
                           jax.random.split(k_d, len(models.discriminators)),
                           x["images"]))
  if pretrained is None:
    text = models.text_encoder.init(k_text, x["captions"], x["lengths"])["params"]
    stream = dict(models.captioner.init(k_stream, x["images"][-1], x["captions"]))
    image = (dict(models.image_encoder.init(jax.random.fold_in(key, 6), x["images"][-1]))
             if uses_damsm_loss(config) else {})  # fold_in: the five keys stay as they were
  else:
    text, stream, image = pretrained
  g_state = _net_state(g, models.g_tx)
  return GANState(step=jnp.zeros((), jnp.int32), g=g_state, g_ema=g_state.params,
                  d=ds, text_encoder=text, stream=stream,
                  image_encoder=image if uses_damsm_loss(config) else {},
                  g_ema_stats=g_state.batch_stats if uses_ema_stats(config) else {},
                  edge_d=init_edge_d(models, config, k_d))


def init_edge_d(models: Models, config, key: jax.Array) -> PyTree:
  """The edge critic's fresh NetState from the Ds' key (folded in, so that every
  other network starts as without it), or {} where the config has none."""
  if models.edge_discriminator is None:
    return {}
  x = example_inputs(config)
  return _net_state(models.edge_discriminator.init(
      jax.random.fold_in(key, 99), x["images"][-1], x["sentence"]), models.d_tx)
