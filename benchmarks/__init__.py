"""Benchmarks: scripts that print figures (docs/benchmarks.md)."""


def compile_afresh() -> None:
  """Compile every program here: the benchmarks time compilation, so no
  persistent compilation cache (a user's JAX_COMPILATION_CACHE_DIR, or the test
  suite's) may answer for XLA."""
  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update("jax_enable_compilation_cache", False)
