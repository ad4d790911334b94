"""Releasing the C heap's freed pages (host_memory.py)."""

import ctypes
import ctypes.util
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mirrorgan_jax import host_memory


def _resident_mib() -> float:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
  raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc: Linux")
def test_release_returns_freed_heap_pages_below_a_live_block():
  """200 MB of 1 KB blocks from the C heap, all freed but the last: glibc
  keeps the freed pages resident (they lie below a live block, so nothing is
  trimmed from the heap's top) until `release` hands them back."""
  libc = ctypes.CDLL(ctypes.util.find_library("c"))
  libc.malloc.restype = ctypes.c_void_p
  libc.free.argtypes = [ctypes.c_void_p]
  blocks = [libc.malloc(1024) for _ in range(200_000)]
  for b in blocks:
    ctypes.memset(b, 1, 1024)  # resident, not just reserved
  for b in blocks[:-1]:
    libc.free(b)
  held = _resident_mib()
  assert host_memory.release()
  released = _resident_mib()
  libc.free(blocks[-1])
  assert held - released > 150, (held, released)


def test_compile_and_release_gives_the_program_the_jitted_function_runs():
  f = jax.jit(lambda x: jnp.sin(x) * 2)
  x = jnp.arange(5.0)
  compiled = host_memory.compile_and_release(f, x)
  np.testing.assert_array_equal(compiled(x), f(x))
