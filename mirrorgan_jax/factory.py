"""Builds every network and optimizer from a configuration, in one place."""

import dataclasses

import jax.numpy as jnp
import ml_collections
import optax

from mirrorgan_jax.config_check import check_config, sentence_code, stage_sizes
from mirrorgan_jax.models.captioner import Captioner
from mirrorgan_jax.models.discriminator import Discriminator
from mirrorgan_jax.models.generator import Generator
from mirrorgan_jax.models.image_encoder import ImageEncoder
from mirrorgan_jax.models.text_encoder import TextEncoder


@dataclasses.dataclass(frozen=True)
class Models:
  """The stateless half of MirrorGAN: Linen modules and optax transforms."""
  text_encoder: TextEncoder
  image_encoder: ImageEncoder
  generator: Generator
  discriminators: tuple[Discriminator, ...]
  captioner: Captioner
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  # A further D at the last scale reading `edge_channels` (`loss.edge_d_weight`,
  # a deviation); None without it (official).
  edge_discriminator: Discriminator | None = None


def adam(lr: float, config) -> optax.GradientTransformation:
  # PyTorch Adam's eps 1e-8 is optax's default too.
  return optax.adam(lr, b1=config.optim.b1, b2=config.optim.b2)


def create_models(config) -> Models:
  check_config(config)
  dtype = jnp.dtype(config.dtype)
  t, m, s, ie = config.text, config.model, config.stream, config.image_encoder
  return Models(
      text_encoder=TextEncoder(t.vocab_size, t.embedding_dim, t.hidden_dim, t.dropout,
                               sentence_code(config)),
      image_encoder=ImageEncoder(t.hidden_dim, ie.backbone, ie.image_size,
                                 tuple(ie.small_widths), dtype),
      generator=Generator(m.ngf, m.r_num, m.condition_dim, m.num_stages,
                          m.base_size, dtype, m.ca_normalize_input,
                          m.image_subpixels, m.masked_image_head),
      discriminators=tuple(Discriminator(size, m.ndf, dtype)
                           for size in stage_sizes(config)),
      captioner=Captioner(t.vocab_size, s.embed_size, s.hidden_size, s.backbone,
                          s.image_size, tuple(s.small_widths), dtype),
      g_tx=adam(config.optim.g_lr, config),
      d_tx=adam(config.optim.d_lr, config),
      edge_discriminator=(Discriminator(stage_sizes(config)[-1], m.ndf, dtype,
                                        float(config.loss.edge_d_gain))
                          if uses_edge_d(config) else None),
  )


def uses_edge_d(config) -> bool:
  """Whether G trains against the edge critic as well (`loss.edge_d_weight`)."""
  return bool(config.loss.get("edge_d_weight", 0.0))


# What no network, step or sampler reads: these change between runs that
# compile the same programs (a resumed run, a gan-only run, another log cadence
# or length, another evaluation of the same model).
NOT_COMPILED = ("train", "eval", "data", "seed", "damsm.weights", "stream.weights",
                "damsm.num_steps", "stream.num_steps", "gan.num_steps")


def program_config(config) -> ml_collections.ConfigDict:
  """`config` without the fields compiled programs never read. Steps and
  samplers are built from this and memoised by it, so reading one of those
  fields there fails instead of reusing a program compiled for another value."""
  c = ml_collections.ConfigDict(config.to_dict())
  for path in NOT_COMPILED:
    *parents, leaf = path.split(".")
    node = c
    for p in parents:
      node = node[p]
    if leaf in node:
      del node[leaf]
  return c
