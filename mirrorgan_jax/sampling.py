"""Images from captions with a trained generator: the EMA parameters and the
live BatchNorm running statistics (as the official sampler), or with
`gan.ema_bn_batches` the EMA parameters' own (`make_ema_stats`), conditioning
augmentation still sampling its noise (official; reference section 15.14;
`gan.sample_ca_noise` and `gan.sample_z_scale` scale the noise down).

Each caption gets its own key, so an image depends only on (its caption, its
key): not on the batch it was drawn in, the batch size or the device count.
The training program, `generate` and `evaluate` all sample through here.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from mirrorgan_jax import parallel
from mirrorgan_jax.factory import Models
from mirrorgan_jax.gan_step import encode_text
from mirrorgan_jax.gan_state import GANState
from mirrorgan_jax.models.layers import BN_MOMENTUM
from mirrorgan_jax.models.text_encoder import padding_mask


EMA_STATS_STREAM = 0x57A7  # folded into the seed's key for make_ema_stats' noise


def sampling_params(state: GANState) -> dict:
  """What sampling needs of a training state (no optimizer, no discriminators)."""
  return {"text_encoder": state.text_encoder, "g_ema": state.g_ema,
          "batch_stats": state.g_ema_stats if state.g_ema_stats else state.g.batch_stats}


def make_ema_stats(models: Models, config) -> Callable:
  """`ema_stats(state, captions, lengths, seed) -> batch_stats`, for
  `gan.ema_bn_batches`: the BatchNorm statistics of the EMA parameters
  themselves, the mean over the batches of `captions` (K, B, T) of each
  batch's own statistics, as SWA's `update_bn` recomputes them for averaged
  weights. The live G's running statistics (official) belong to other weights:
  with them the shapes default's EMA generator drew about 0.01 fewer captions
  right on each test split (six runs; docs/shapes_default_job.md). The noise
  comes from a key fixed by the int32 `seed` (the run's): the statistics are a
  function of the parameters."""
  z_dim = config.model.z_dim

  def one_batch(state, captions, lengths, key):
    z_key, noise_key = jax.random.split(key)
    words, sentence = encode_text(models, state.text_encoder, captions, lengths)
    z = jax.random.normal(z_key, (captions.shape[0], z_dim))
    # From zero statistics the update leaves (1 - momentum) * this batch's.
    zero = jax.tree.map(jnp.zeros_like, state.g.batch_stats)
    _, new = models.generator.apply(
        {"params": state.g_ema, "batch_stats": zero}, z, sentence, words,
        padding_mask(lengths, captions.shape[1]), train=True, rngs={"noise": noise_key},
        mutable=["batch_stats"])
    return jax.tree.map(lambda x: x / (1.0 - BN_MOMENTUM), new["batch_stats"])

  def ema_stats(state, captions, lengths, seed):
    key = jax.random.fold_in(jax.random.key(seed), EMA_STATS_STREAM)
    keys = jax.random.split(key, captions.shape[0])
    per_batch = jax.lax.map(lambda a: one_batch(state, *a), (captions, lengths, keys))
    return jax.tree.map(lambda x: x.mean(0), per_batch)

  return ema_stats


def example_keys(seed_key: jax.Array, indices, samples=0) -> jax.Array:
  """One key per row: fold_in(fold_in(seed_key, caption index), sample index)."""
  indices = jnp.asarray(indices, jnp.uint32)
  samples = jnp.broadcast_to(jnp.asarray(samples, jnp.uint32), indices.shape)
  return jax.vmap(lambda i, k: jax.random.fold_in(jax.random.fold_in(seed_key, i), k))(
      indices, samples)


def sampling_noise(config) -> tuple[float, float]:
  """(z's scale, conditioning augmentation's noise scale) at sampling:
  `gan.sample_z_scale` and `gan.sample_ca_noise`, 1 and 1 officially. Scaled
  down they trade the samples' variety for drawing the caption (the z scale
  is the truncation of BigGAN, Brock et al. 2019, as a scale); training and
  the statistics of `make_ema_stats` keep the full noise."""
  return float(config.gan.sample_z_scale), float(config.gan.sample_ca_noise)


def make_sampler(models: Models, config) -> Callable:
  """`sample(params, captions, lengths, keys) -> (images, attention)` with
  `params` from `sampling_params` and one key per caption: images a tuple with
  one float32 (B, S, S, 3) array in [-1, 1] per stage, attention a tuple with
  one (B, T, S, S) word-attention map per refinement stage."""
  z_dim = config.model.z_dim
  z_scale, ca_noise = sampling_noise(config)

  def one(params, captions, lengths, key):
    z_key, noise_key = jax.random.split(key)
    captions, lengths = captions[None], lengths[None]
    words, sentence = encode_text(models, params["text_encoder"], captions, lengths)
    z = jax.random.normal(z_key, (1, z_dim))
    if z_scale != 1.0:  # the official program stays as it was
      z = z_scale * z
    images, attention, _, _ = models.generator.apply(
        {"params": params["g_ema"], "batch_stats": params["batch_stats"]}, z, sentence,
        words, padding_mask(lengths, captions.shape[1]), train=False, ca_noise=ca_noise,
        rngs={"noise": noise_key})
    return (tuple(jnp.asarray(x[0], jnp.float32) for x in images),
            tuple(a[0] for a in attention))

  def sample(params, captions, lengths, keys):
    return jax.vmap(one, in_axes=(None, 0, 0, 0))(params, captions, lengths, keys)

  return sample


def local_replica(params, mesh):
  """This process's copy of replicated `params`, replicated over `mesh` (of
  this process's devices): sampling then needs no other process."""
  return jax.device_put(jax.tree.map(lambda x: x.addressable_data(0), params),
                        parallel.replicated(mesh))


def batched(fn: Callable, params, mesh, batch_size: int, ids, lens, keys):
  """Runs `fn(params, ids, lens, keys)` over rows in batches of `batch_size`
  (a multiple of the mesh size; the last batch padded), the batch sharded
  over the mesh of this process's devices; yields each batch's outputs as
  numpy arrays with the padding removed, in order. Batch i + 1 is queued
  before batch i is read back, so the devices never wait for the host."""
  sharding = parallel.data_sharded(mesh)
  pending = None
  for start in range(0, len(ids), batch_size):
    n = min(batch_size, len(ids) - start)
    take = np.minimum(np.arange(start, start + batch_size), start + n - 1)  # pad: repeat the last row
    out = fn(params, *jax.device_put((ids[take], lens[take], keys[take]), sharding))
    if pending is not None:
      yield _host(*pending)
    pending = out, n
  if pending is not None:
    yield _host(*pending)


def _host(out, n: int):
  return jax.tree.map(lambda x: np.asarray(x)[:n], out)
