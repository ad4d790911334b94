"""The training step's guard against non-finite updates, and the GAN step as
training runs it. Its own room, light in imports, so that benchmarks (and a
GPU machine without the data stack) build the very step that `train.py` runs."""

from typing import Callable

import jax
import jax.numpy as jnp

from mirrorgan_jax import gan_state, gan_step


def guard_nonfinite(step_fn: Callable, step_keeps_state: bool = False) -> Callable:
  """The step, keeping the previous state when any metric is not finite or
  the step dropped its update, with 'finite' added to the metrics: no run
  ever continues from a NaN update.

  `step_keeps_state`: the step itself keeps its state whenever a metric is not
  finite (the GAN step, gan_step.py point 6), so the guard only reports: a
  second select over the whole state would hold a copy of it through the step.
  """

  def guarded(state, batch, key):
    new, metrics = step_fn(state, batch, key)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(metrics)]))
    # The step itself drops an update that is not finite under finite losses
    # (gan_step.py, point 6): counted and handled like a non-finite loss.
    finite = finite & (metrics.get("update_skipped", 0.0) == 0)
    if not step_keeps_state:
      new = gan_state.where_tree(finite, new, state)
    return new, {**metrics, "finite": finite}

  return guarded


def gan_train_step(models, config) -> Callable:
  """The GAN step as training runs it (to jit with `parallel.jit_train_step`):
  guarded, the step keeping its own state on a non-finite metric."""
  return guard_nonfinite(gan_step.make_train_step(models, config), step_keeps_state=True)
