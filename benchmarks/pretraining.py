"""The damsm and stream phases' steps one after the other and at once, a thread
each, as `train.concurrent_pretraining` runs them (mirrorgan_jax/trainer.py):
each step fed by its phase's input pipeline as the trainer feeds it.

  python -m benchmarks.pretraining                       # the shapes default
  python -m benchmarks.pretraining --damsm_steps=600 --stream_steps=1800

Prints, after one warm-up pass of each, the seconds each phase's steps take
alone and at once, the wall time at once, and its ratio to the sum alone. On a
CPU neither step keeps the cores busy, so at once they take less than the sum.
"""

import threading
import time

from absl import app, flags
import jax

import benchmarks
from configs import shapes, tiny
from mirrorgan_jax import factory, parallel, trainer
from mirrorgan_jax.data import pipeline

FLAGS = flags.FLAGS
PRESETS = {"shapes": shapes.get_config, "tiny": tiny.get_config}


class Phase:
  """One pretraining phase's state, compiled step and batches, timed by `run`."""

  def __init__(self, config, phase: str, mesh):
    pc = trainer.phase_config(config, phase)
    models = factory.create_models(pc)
    init, make_step = trainer._PRETRAIN[phase][:2]  # pylint: disable=protected-access
    self.mesh, self.key = mesh, jax.random.key(1)
    self.state = jax.jit(lambda k: init(models, pc, k))(jax.random.key(0))
    _, ds = pipeline.from_config(pc)
    self.batches = pipeline.iterator(ds, 0, 0)
    step = jax.jit(make_step(models, pc), donate_argnums=0)
    self.step = step.lower(self.state, self._batch(), self.key).compile()

  def _batch(self):
    return pipeline.device_batch(self.mesh, next(self.batches))

  def run(self, steps: int) -> float:
    """Seconds for `steps` steps, each with its batch read in this thread and,
    as the trainer does, the previous step's metrics read once it is queued."""
    t0 = time.perf_counter()
    previous = None
    for _ in range(steps):
      self.state, metrics = self.step(self.state, self._batch(), self.key)
      if previous is not None:
        jax.block_until_ready(previous)
      previous = metrics
    jax.block_until_ready(metrics)
    return time.perf_counter() - t0


def measure(config, steps: dict) -> dict:
  """{'alone': {phase: s}, 'at_once': {phase: s}, 'wall': s} for `steps` per phase."""
  mesh = parallel.make_mesh()
  phases = {p: Phase(config, p, mesh) for p in steps}
  for p, phase in phases.items():  # warm-up: first runs, caches
    phase.run(min(steps[p], 20))
  alone = {p: phase.run(steps[p]) for p, phase in phases.items()}
  at_once = {}

  def run(p):
    at_once[p] = phases[p].run(steps[p])

  t0 = time.perf_counter()
  threads = [threading.Thread(target=run, args=(p,)) for p in phases]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  return {"alone": alone, "at_once": at_once, "wall": time.perf_counter() - t0}


def main(argv):
  del argv
  steps = {"damsm": FLAGS.damsm_steps, "stream": FLAGS.stream_steps}
  benchmarks.compile_afresh()
  r = measure(PRESETS[FLAGS.preset](), steps)
  total = sum(r["alone"].values())
  for p, n in steps.items():
    print(f"{p}: {n} steps, alone {r['alone'][p]:.2f} s ({1e3 * r['alone'][p] / n:.1f} ms "
          f"per step), at once {r['at_once'][p]:.2f} s")
  print(f"one after the other {total:.2f} s; at once {r['wall']:.2f} s "
        f"({r['wall'] / total:.2f}x)")


if __name__ == "__main__":
  flags.DEFINE_enum("preset", "shapes", list(PRESETS), "configs/<preset>.py")
  flags.DEFINE_integer("damsm_steps", 600, "damsm steps timed each way")
  flags.DEFINE_integer("stream_steps", 1800, "stream steps timed each way")
  app.run(main)
