"""Milliseconds per MirrorGAN training iteration.

Prints, after warm-up, the median/min/max time of one full iteration (text
encoding, G forward, every D update, G loss through the updated Ds and the
frozen STREAM, G update, EMA; with the trainer's non-finite guard, as training
runs it), images per second, the system CPU time and page faults per timed
step (on CPU mostly the kernel zeroing fresh pages for XLA's temporaries), the
compile time, XLA's memory plan for the step, the device's peak memory where
the backend reports it, and the process's peak resident memory.

  python -m benchmarks.step_time                          # (a) birds, (b) one 64 px stage
  python -m benchmarks.step_time --presets=stage64 --dtype=bfloat16
  python -m benchmarks.step_time --presets=tiny --steps=20
  python -m benchmarks.step_time --presets=config --config=configs/coco.py \
      --config.model.num_stages=2

Presets: `birds` = configs/birds.py (three stages to 256 px, batch 12, ResNet-152
STREAM); `stage64` = the same networks with one 64 px stage and batch 8; `tiny`
= configs/tiny.py; `config` = the file given with --config, with any
--config.<field>=<value> overrides. Data are random arrays already on the devices, so this
measures the step alone.
"""

import os
import resource
import statistics
import time

from absl import app, flags
import jax

import benchmarks
from ml_collections import config_flags

from configs import birds, tiny
from mirrorgan_jax import factory, gan_state, guarded_step, host_memory, parallel
from mirrorgan_jax.batch import random_batch
from mirrorgan_jax.config_check import stage_sizes

FLAGS = flags.FLAGS
flags.DEFINE_list("presets", ["birds", "stage64"], "Which configurations to time.")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"],
                  "Compute dtype (default: the config's).")
flags.DEFINE_integer("steps", 5, "Timed iterations.")
flags.DEFINE_integer("warmup", 2, "Untimed iterations after compilation.")
config_flags.DEFINE_config_file("config", None, "Config file for the `config` preset.")


def preset_config(name: str):
  if name == "birds":
    return birds.get_config()
  if name == "stage64":
    config = birds.get_config()
    config.model.num_stages = 1
    config.batch_size = 8
    return config
  if name == "tiny":
    return tiny.get_config()
  if name == "config":
    if FLAGS.config is None:
      raise app.UsageError("the `config` preset needs --config=<file>")
    return FLAGS.config
  raise app.UsageError(f"unknown preset {name!r}: use birds, stage64, tiny or config")


def mib(n_bytes) -> str:
  return f"{n_bytes / 2**20:,.0f} MiB"


def setup(name: str):
  """(config, mesh, state, batch, key, compiled step, compile seconds) of a
  preset, the state random and the batch random, on all devices."""
  config = preset_config(name)
  if FLAGS.dtype:
    config.dtype = FLAGS.dtype
  models = factory.create_models(config)
  mesh = parallel.make_mesh()
  parallel.check_batch_size(config.batch_size, mesh)
  state = benchmarks.init_state(lambda k: gan_state.init_gan_state(models, config, k),
                                 mesh, jax.random.key(config.seed))
  batch = parallel.global_batch(mesh, random_batch(config))
  key = jax.random.key(1)
  step = parallel.jit_train_step(guarded_step.gan_train_step(models, config), mesh)
  # The init runs asynchronously: timed without this, the compile shared the
  # cores with it (birds: 14 s of random draws for 388M parameters).
  jax.block_until_ready((state, batch))
  t0 = time.perf_counter()
  compiled = step.lower(state, batch, key).compile()
  compile_s = time.perf_counter() - t0
  host_memory.release()  # as the trainer does before a step first runs
  return config, mesh, state, batch, key, compiled, compile_s


def kernel_work() -> tuple[float, int]:
  """(system CPU seconds, minor page faults) of this process so far."""
  return os.times().system, resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed_steps(compiled, state, batch, key, warmup: int, steps: int):
  """(state, metrics, milliseconds of each timed step)."""
  for _ in range(warmup):
    state, metrics = compiled(state, batch, key)
  jax.block_until_ready(state)
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    state, metrics = compiled(state, batch, key)
    jax.block_until_ready(metrics)
    times.append(1000 * (time.perf_counter() - t0))
  return state, metrics, times


def time_preset(name: str) -> None:
  config, mesh, state, batch, key, compiled, compile_s = setup(name)
  if FLAGS.warmup:
    state, _, _ = timed_steps(compiled, state, batch, key, FLAGS.warmup, 0)
  before = kernel_work()
  state, metrics, times = timed_steps(compiled, state, batch, key, 0, FLAGS.steps)
  system_s, faults = (b - a for a, b in zip(before, kernel_work()))

  med = statistics.median(times)
  sizes = "/".join(str(s) for s in stage_sizes(config))
  print(f"\n== {name}: stages {sizes} px, batch {config.batch_size}, "
        f"STREAM {config.stream.backbone}, {config.dtype}, "
        f"{mesh.size} x {jax.devices()[0].device_kind}")
  print(f"  step time   median {med:,.1f} ms   min {min(times):,.1f} ms   "
        f"max {max(times):,.1f} ms   ({FLAGS.steps} steps after {FLAGS.warmup} warm-up)")
  print(f"  throughput  {1000 * config.batch_size / med:,.2f} images/s")
  # The kernel's share: mostly zeroing the fresh pages XLA:CPU maps for its
  # temporaries at every execution (docs/benchmarks.md, "Eleventh sitting").
  print(f"  kernel      {system_s / FLAGS.steps:,.2f} s system CPU and "
        f"{faults / FLAGS.steps:,.0f} page faults per timed step")
  print(f"  compile     {compile_s:,.1f} s")
  mem = compiled.memory_analysis()
  if mem is not None:
    print(f"  XLA plan    arguments {mib(mem.argument_size_in_bytes)}, "
          f"temporaries {mib(mem.temp_size_in_bytes)}, outputs {mib(mem.output_size_in_bytes)}"
          f" (donated state aliased: {mib(mem.alias_size_in_bytes)})")
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    print(f"  device peak {mib(stats['peak_bytes_in_use'])}")
  print(f"  host peak   {mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)}"
        " resident (the whole process so far)")
  print(f"  losses      d {float(metrics['d_loss']):.4f}   g {float(metrics['g_loss']):.4f}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  benchmarks.compile_afresh()
  for name in FLAGS.presets:
    time_preset(name)


if __name__ == "__main__":
  host_memory.restart_with_huge_pages()
  app.run(main)
