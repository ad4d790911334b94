"""Multi-process start-up, before anything touches the XLA backend (so this
module imports nothing that creates arrays)."""

import os

import jax


def maybe_initialize(config) -> bool:
  """Calls `jax.distributed.initialize()` when config.train.distributed is
  "yes", or "auto" and the environment describes a cluster: SLURM with several
  tasks, Open MPI, or JAX_COORDINATOR_ADDRESS with JAX_NUM_PROCESSES and
  JAX_PROCESS_ID. On CPU the collectives are gloo's. Returns whether it did."""
  mode = config.train.distributed
  if mode not in ("auto", "yes", "no"):
    raise ValueError(f"config.train.distributed must be auto, yes or no, got {mode!r}")
  env = os.environ
  asked = mode == "yes" or (mode == "auto" and (
      "JAX_COORDINATOR_ADDRESS" in env or int(env.get("SLURM_NTASKS", "1")) > 1
      or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1))
  if not asked:
    return False
  if env.get("JAX_PLATFORMS", "") == "cpu":
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if "JAX_COORDINATOR_ADDRESS" in env:
    jax.distributed.initialize(env["JAX_COORDINATOR_ADDRESS"], int(env["JAX_NUM_PROCESSES"]),
                               int(env["JAX_PROCESS_ID"]))
  else:
    jax.distributed.initialize()
  return True
