"""Test set-up: 8 fake CPU devices, so data-parallel code runs as on a pod slice.

Must run before JAX initialises its backends; single-device tests build a mesh
over the first device only.

Programs compile with most of XLA's optimisation passes off (also in the
training processes the tests start, which inherit the environment): the tests
check what programs compute, and on 2 CPU cores those passes take much of their
time (docs/tests.md). A test marked `optimized` compiles as users' programs do;
the benchmarks measure only optimised programs.

Compiled programs go to a persistent compilation cache in a fresh folder for
the run (set before xdist starts its workers, so the workers and every training
or CLI process a test starts share it): a program that several tests or
processes compile alike, such as the tiny config's steps, compiles once, however
quickly it compiles. The
cache key covers the program, the devices, the XLA flags and the optimisation
setting, so a hit is the executable the test would have compiled.
"""

import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="mirrorgan-tests-xla-")
else:
  _CACHE = None  # the caller's (or the xdist controller's) folder
# Every program, not only those compiling in over a second (JAX's default): the
# inits the trainer releases after running them, the tiny steps and Orbax's
# slices compile in less, and a second run of the tiny config then took 28.7 s
# instead of 35.8 s (docs/tests.md).
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)


def pytest_unconfigure(config):
  del config
  if _CACHE is not None:
    shutil.rmtree(_CACHE, ignore_errors=True)


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
