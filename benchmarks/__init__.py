"""Benchmarks: scripts that print figures (docs/benchmarks.md)."""


def compile_afresh() -> None:
  """Compile every program here: the benchmarks time compilation, so no
  persistent compilation cache (a user's JAX_COMPILATION_CACHE_DIR, or the test
  suite's) may answer for XLA."""
  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update("jax_enable_compilation_cache", False)


def lower_init(init_fn, mesh, key, on_host=None):
  """(lowered init, key to call it with, whether it runs on the host CPU) for
  a benchmark's random state. On accelerators the init is compiled and run on
  the host's CPU device and then replicated over the mesh (`place_state`): the
  birds init, hundreds of small random-number and QR programs, took 145.7 s on
  an H200 (compile and run not separated), against 35 s to compile and 12 s to
  run on 2 CPU cores. The values are the same draws either way (threefry), up
  to the QR of the orthogonal inits."""
  import jax  # pylint: disable=import-outside-toplevel
  from mirrorgan_jax import parallel  # pylint: disable=import-outside-toplevel
  if on_host is None:
    on_host = mesh.devices.flat[0].platform != "cpu"
  if not on_host:
    return parallel.jit_init(init_fn, mesh).lower(key), key, False
  cpu = jax.devices("cpu")[0]
  key = jax.device_put(key, cpu)
  with jax.default_device(cpu):
    return jax.jit(init_fn).lower(key), key, True


def place_state(state, mesh, on_host: bool):
  """The init's output replicated over the mesh (a no-op where it ran there)."""
  import jax  # pylint: disable=import-outside-toplevel
  from mirrorgan_jax import parallel  # pylint: disable=import-outside-toplevel
  return jax.device_put(state, parallel.replicated(mesh)) if on_host else state


def init_state(init_fn, mesh, key, on_host=None):
  """A benchmark's random state, replicated over the mesh (see `lower_init`)."""
  lowered, key, on_host = lower_init(init_fn, mesh, key, on_host)
  return place_state(lowered.compile()(key), mesh, on_host)
