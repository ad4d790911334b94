"""Images per second of evaluation (issue 13), as `evaluate` computes them:
the EMA generator's last stage for test captions, made uint8, then
Inception's pool features and logits (IS, FID) and the DAMSM image codes
(R-precision), in one compiled program per batch sharded over the devices,
only the features read back (`evaluate.measuring_job` over `sampling.batched`).

  python -m benchmarks.evaluate_rate                        # shapes default, birds
  python -m benchmarks.evaluate_rate --presets=shapes --images=3200
  python -m benchmarks.evaluate_rate --presets=tiny --images=16 --json=out.json

Presets: `shapes` = configs/shapes.py, `birds` = configs/birds.py (three stages
to 256 px, Inception at 299 px), `tiny` = configs/tiny.py. Random weights and
random captions: the rate does not depend on them. Prints the compile time,
images/s for sampling alone (what `generate` runs) and for the whole measuring
job, and what `evaluate --num-images 30000` would take at that rate; the real
images' FID statistics (computed once per dataset and cached) are not included.
"""

import json
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

import benchmarks
from configs import birds, shapes, tiny
from mirrorgan_jax import evaluate, factory, host_memory, parallel, pretrain_steps, summaries
from mirrorgan_jax.config_check import stage_sizes
from mirrorgan_jax.gan_state import example_inputs
from mirrorgan_jax.metrics import inception_net
from mirrorgan_jax.sampling import batched, example_keys, make_sampler

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Only when run as a program: other benchmarks (imported with this one in
  the tests) define flags of the same names."""
  flags.DEFINE_list("presets", ["shapes", "birds"], "Which configurations to time.")
  flags.DEFINE_integer("images", 0, "Timed images per preset (0: 10 batches).")
  flags.DEFINE_integer("batch", 0, "Images per batch (0: the config's batch size, as evaluate).")
  flags.DEFINE_string("json", "", "Also write the figures to this file.")

PROTOCOL_IMAGES = 30_000
PRESETS = {"shapes": shapes.get_config, "birds": birds.get_config, "tiny": tiny.get_config}


def random_params(config, models, key):
  """Sampling parameters, Inception and DAMSM image encoder variables, random."""
  x = example_inputs(config)
  k_text, k_g, k_noise, k_damsm = jax.random.split(key, 4)

  def init(k_text, k_g, k_noise, k_damsm):
    text = models.text_encoder.init(k_text, x["captions"], x["lengths"])["params"]
    g = models.generator.init({"params": k_g, "noise": k_noise}, x["z"], x["sentence"],
                              x["words"], x["mask"])
    image = pretrain_steps.init_damsm_state(models, config, k_damsm).image
    return ({"text_encoder": text, "g_ema": g["params"], "batch_stats": g["batch_stats"]},
            {"params": image.params, "batch_stats": image.batch_stats})

  return jax.jit(init)(k_text, k_g, k_noise, k_damsm)


def measure(config, images: int = 0, batch: int = 0) -> dict:
  """The figures of one configuration on all local devices."""
  mesh = parallel.make_mesh(jax.local_devices())
  n = mesh.size
  batch = -(-(batch or config.batch_size) // n) * n
  images = images or 10 * batch
  models = factory.create_models(config)
  t0 = time.perf_counter()
  sampling, damsm_vars = random_params(config, models, jax.random.key(0))
  net = inception_net.load(None, image_size=config.eval.get("inception_image_size", 299),
                           mesh=mesh)
  repl = parallel.replicated(mesh)
  sampling, damsm_vars = jax.device_put((sampling, damsm_vars), repl)
  init_s = time.perf_counter() - t0
  rng = np.random.default_rng(0)
  t = config.text.words_num
  ids = rng.integers(1, config.text.vocab_size, (images, t)).astype(np.int32)
  lens = np.full((images,), t, np.int32)
  keys = example_keys(jax.random.key(1), np.arange(images))
  sample = make_sampler(models, config)
  jobs = {
      "sampling": (jax.jit(lambda *a: summaries.to_uint8(sample(*a)[0][-1], jnp)), sampling),
      "measuring": (evaluate.measuring_job(sample, net.forward,
                                           evaluate.damsm_image_codes(models.image_encoder)),
                    (sampling, net.variables, damsm_vars)),
  }
  out = {"stage_sizes": [int(s) for s in stage_sizes(config)], "batch": batch,
         "devices": n, "device_kind": jax.devices()[0].device_kind,
         "inception_image_size": net.image_size, "images": images, "init_s": init_s}
  for name, (fn, params) in jobs.items():
    t0 = time.perf_counter()
    jax.block_until_ready(list(batched(fn, params, mesh, batch, ids[:batch], lens[:batch],
                                       keys[:batch])))
    out[f"{name}_compile_s"] = time.perf_counter() - t0  # and one batch
    t0 = time.perf_counter()
    for _ in batched(fn, params, mesh, batch, ids, lens, keys):
      pass
    seconds = time.perf_counter() - t0
    out[f"{name}_images_per_s"] = images / seconds
    out[f"{name}_protocol_minutes"] = PROTOCOL_IMAGES / out[f"{name}_images_per_s"] / 60
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  benchmarks.compile_afresh()
  results = {}
  for name in FLAGS.presets:
    if name not in PRESETS:
      raise app.UsageError(f"unknown preset {name!r}: use {', '.join(PRESETS)}")
    r = measure(PRESETS[name](), FLAGS.images, FLAGS.batch)
    results[name] = r
    print(f"\n== {name}: stages {'/'.join(map(str, r['stage_sizes']))} px, batch {r['batch']}, "
          f"Inception at {r['inception_image_size']} px, {r['devices']} x {r['device_kind']}, "
          f"{r['images']} images")
    for job in ("sampling", "measuring"):
      print(f"  {job:9s}  {r[f'{job}_images_per_s']:9.1f} images/s   compile + first batch "
            f"{r[f'{job}_compile_s']:.1f} s   {PROTOCOL_IMAGES} images: "
            f"{r[f'{job}_protocol_minutes']:.1f} min")
  if FLAGS.json:
    with open(FLAGS.json, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  host_memory.restart_with_huge_pages()
  define_flags()
  app.run(main)
