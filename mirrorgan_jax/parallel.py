"""The device mesh and shardings, declared once.

Data parallelism is `jax.jit` over a one-axis mesh ('data'): the batch is
sharded along its first dimension, the state is replicated, and XLA inserts
the gradient all-reduce. This is what `pmap` data parallelism has become: since
JAX 0.8 `pmap` is itself built on `jit` + `shard_map` and is in maintenance
mode. The same compiled step runs on 1 or N devices and on several hosts;
BatchNorm statistics are computed over the global batch with no extra code.
"""

from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mirrorgan_jax.config_check import ConfigError

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A data-parallel mesh over `devices` (default: every device of every process)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, field: str = "batch_size") -> None:
  if batch_size % mesh.size:
    raise ConfigError(f"config.{field} ({batch_size}) must be divisible by the "
                     f"number of devices in the mesh ({mesh.size})")


def global_batch(mesh: Mesh, local_batch):
  """Assembles each process's share of the batch into global arrays sharded
  over the 'data' axis (on one process: the whole batch)."""
  sharding = data_sharded(mesh)
  leaves = jax.tree.leaves(local_batch)
  if leaves:
    check_batch_size(len(leaves[0]) * jax.process_count(), mesh)
  if jax.process_count() == 1:  # one transfer for the whole batch: less host time per step
    return jax.device_put(jax.tree.map(np.asarray, local_batch), sharding)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      local_batch)


def jit_init(init_fn: Callable, mesh: Mesh) -> Callable:
  """`init_fn(key) -> state`, compiled with the state replicated on the mesh."""
  return jax.jit(init_fn, out_shardings=replicated(mesh))


def jit_train_step(step_fn: Callable, mesh: Mesh) -> Callable:
  """`step_fn(state, batch, key) -> (state, metrics)` compiled for the mesh:
  state replicated and donated, batch sharded over 'data'."""
  repl = replicated(mesh)
  return jax.jit(step_fn, in_shardings=(repl, data_sharded(mesh), repl),
                 out_shardings=(repl, repl), donate_argnums=0)
