"""Test set-up: 8 fake CPU devices, so data-parallel code runs as on a pod slice.

Must run before JAX initialises its backends; single-device tests build a mesh
over the first device only.

Programs compile with most of XLA's optimisation passes off (also in the
training processes the tests start, which inherit the environment): the tests
check what programs compute, and on 2 CPU cores those passes take much of their
time (docs/tests.md). A test marked `optimized` compiles as users' programs do;
the benchmarks measure only optimised programs.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)


@pytest.fixture(autouse=True)
def _optimized_programs(request):
  """XLA's optimisations on for tests marked `optimized`."""
  if request.node.get_closest_marker("optimized") is None:
    yield
    return
  before = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", False)
  try:
    yield
  finally:
    jax.config.update("jax_disable_most_optimizations", before)
