"""What the training loop adds to the GAN step: the shapes default's gan phase
inside `trainer.run` against the same jitted step timed alone.

  python -m benchmarks.train_loop                       # shapes default, 1,000 iterations
  python -m benchmarks.train_loop --iterations=600 --config.batch_size=16

Three figures, each in ms per iteration:
  step alone      the trainer's guarded GAN step on batches already on the
                  devices, back to back, one sync at the end; timed before
                  and again after the loop (the machine's speed drifts), and
                  the loop compared with their mean;
  step + data     the same, each batch taken from the input pipeline as the
                  trainer takes it (iterator, host-to-device, [-1, 1]);
  loop            `trainer.run`'s gan phase between two log points that hold no
                  checkpoint, sample grid or evaluation (from metrics.jsonl);
then the loop's overhead over the step alone, the seconds that each
checkpoint (with its evaluation metric) and sample grid add, and the host CPU
time the feed takes per batch with nothing else running (on a machine whose
cores XLA keeps busy, what the feed takes from the step). The DAMSM and
STREAM phases run one iteration each (their weights do not change the
GAN step's cost); everything is written to a temporary folder. In the real job
those phases have made every shapes example once before the gan phase starts,
so the source's cache is full: `--warm_cache` (default) makes them first, as
they would; `--nowarm_cache` times a gan phase on examples never made.
"""

import json
import os
import resource
import statistics
import tempfile
import time

from absl import app, flags
import jax
from ml_collections import config_flags

import benchmarks
from mirrorgan_jax import factory, gan_state, guarded_step, host_memory, parallel, trainer
from mirrorgan_jax.data import pipeline

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/shapes.py", "Config file (and overrides).")
flags.DEFINE_integer("iterations", 1000, "GAN iterations of the trainer run.")
flags.DEFINE_integer("step_iterations", 100, "Iterations of each step-alone timing.")
flags.DEFINE_string("json", None, "Also write the figures to this file.")
flags.DEFINE_bool("warm_cache", True, "Make every training example once first (shapes), as "
                  "the DAMSM and STREAM phases of the real job do.")


def _median_ms(seconds: list[float], n: int) -> float:
  return 1000 * statistics.median(seconds) / n


def warm_cache(config) -> float:
  """Makes every training example of the gan phase's source once; seconds."""
  source, _ = pipeline.from_config(trainer.phase_config(config, "gan"))
  t0 = time.perf_counter()
  for i in range(len(source)):
    source.example(i)
  return time.perf_counter() - t0


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def feed_cpu_ms(config, batches: int = 300) -> float:
  """Host CPU time (every thread of the process) per batch that the pipeline
  makes and puts on the devices, as the trainer feeds the step."""
  pc = trainer.phase_config(config, "gan")
  mesh = parallel.make_mesh()
  _, ds = pipeline.from_config(pc)
  data = pipeline.iterator(ds, config.data.workers, config.data.prefetch)
  for _ in range(10):
    jax.block_until_ready(pipeline.device_batch(mesh, next(data)))
  t0 = _cpu_seconds()
  for _ in range(batches):
    batch = pipeline.device_batch(mesh, next(data))
  jax.block_until_ready(batch)
  cpu = _cpu_seconds() - t0
  if hasattr(data, "close"):
    data.close()
  return 1000 * cpu / batches


def time_step(config) -> dict:
  """The guarded step alone, and with the pipeline feeding it (ms/iteration)."""
  pc = trainer.phase_config(config, "gan")
  models = factory.create_models(pc)
  mesh = parallel.make_mesh()
  state = benchmarks.init_state(lambda k: gan_state.init_gan_state(models, pc, k),
                                 mesh, jax.random.key(0))
  step = parallel.jit_train_step(guarded_step.gan_train_step(models, pc), mesh)
  _, ds = pipeline.from_config(pc)
  data = pipeline.iterator(ds, config.data.workers, config.data.prefetch)
  batches = [pipeline.device_batch(mesh, next(data)) for _ in range(8)]
  key = jax.random.key(1)
  state, metrics = step(state, batches[0], key)  # compiles
  jax.block_until_ready(metrics)
  n = FLAGS.step_iterations
  alone, fed = [], []
  for _ in range(3):
    t0 = time.perf_counter()
    for i in range(n):
      state, metrics = step(state, batches[i % len(batches)], key)
    jax.block_until_ready((state, metrics))
    alone.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(n):
      state, metrics = step(state, pipeline.device_batch(mesh, next(data)), key)
    jax.block_until_ready((state, metrics))
    fed.append(time.perf_counter() - t0)
  if hasattr(data, "close"):
    data.close()
  return {"step_alone_ms": _median_ms(alone, n), "step_data_ms": _median_ms(fed, n)}


def windows(logs: list[dict], sample_every: int, checkpoint_every: int) -> tuple:
  """(quiet, busy): (iterations, seconds) between consecutive log lines, split
  by whether a sample grid or checkpoint fell in between. They come after the
  log line of their iteration, so in the window that starts there."""
  due = lambda i, every: every > 0 and i % every == 0  # noqa: E731
  quiet, busy = [], []
  for prev, cur in zip(logs, logs[1:]):
    window = (cur["step"] - prev["step"], cur["time"] - prev["time"])
    if due(prev["step"], sample_every) or due(prev["step"], checkpoint_every):
      busy.append(window)
    else:
      quiet.append(window)
  return quiet, busy


def time_loop(config, workdir: str) -> dict:
  """The gan phase of trainer.run, read back from its metrics.jsonl."""
  config.damsm.num_steps = 1
  config.stream.num_steps = 1
  config.gan.num_steps = FLAGS.iterations
  t0 = time.perf_counter()
  trainer.run(config, workdir)
  total = time.perf_counter() - t0
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    logs = [r for r in map(json.loads, f) if r["phase"] == "gan" and "iterations_per_s" in r]
  quiet, events = windows(logs, config.train.sample_every, config.train.checkpoint_every)
  if not quiet:
    raise app.UsageError("no window without checkpoints: raise --iterations or "
                         "--config.train.checkpoint_every")
  loop_ms = statistics.median(1000 * dt / n for n, dt in quiet)
  extra = [dt - n * loop_ms / 1000 for n, dt in events]
  first, last = logs[0], logs[-1]
  return {"loop_ms": loop_ms,
          "event_extra_s": statistics.median(extra) if extra else None,
          "events": len(extra),
          "gan_wall_ms": 1000 * (last["time"] - first["time"]) / (last["step"] - first["step"]),
          "run_s": total}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  benchmarks.compile_afresh()
  config = FLAGS.config
  print(f"devices: {jax.device_count()} x {jax.devices()[0].platform}, batch "
        f"{config.batch_size}, stages {config.model.num_stages}", flush=True)
  if FLAGS.warm_cache and config.dataset == "shapes":
    print(f"made every training example once in {warm_cache(config):.1f} s", flush=True)
  feed = feed_cpu_ms(config)
  before = time_step(config)
  with tempfile.TemporaryDirectory() as workdir:
    loop = time_loop(config, os.path.join(workdir, "run"))
  after = time_step(config)
  step = {k: (before[k] + after[k]) / 2 for k in before}
  out = {**step, **loop, "feed_cpu_ms": feed,
         "step_alone_before_ms": before["step_alone_ms"],
         "step_alone_after_ms": after["step_alone_ms"],
         "loop_overhead": loop["loop_ms"] / step["step_alone_ms"] - 1,
         "gan_overhead": loop["gan_wall_ms"] / step["step_alone_ms"] - 1}
  print(f"step alone        {out['step_alone_ms']:8.1f} ms/iteration (mean of "
        f"{before['step_alone_ms']:.1f} before and {after['step_alone_ms']:.1f} after the loop)")
  print(f"step + data       {out['step_data_ms']:8.1f} ms/iteration")
  print(f"feed              {feed:8.2f} ms of host CPU per batch, alone "
        f"({100 * feed / out['step_alone_ms']:.1f} % of the step alone)")
  print(f"loop              {out['loop_ms']:8.1f} ms/iteration "
        f"({100 * out['loop_overhead']:+.1f} % over the step alone)")
  if out["event_extra_s"] is not None:
    print(f"checkpoint/sample {out['event_extra_s']:8.2f} s each ({out['events']} windows)")
  print(f"gan phase overall {out['gan_wall_ms']:8.1f} ms/iteration "
        f"({100 * out['gan_overhead']:+.1f} %, checkpoints and samples included)")
  print(f"trainer.run       {out['run_s']:8.1f} s in all (compiles included)")
  if FLAGS.json:
    with open(FLAGS.json, "w", encoding="utf-8") as f:
      json.dump(out, f, indent=2)


if __name__ == "__main__":
  host_memory.restart_with_huge_pages()
  app.run(main)
