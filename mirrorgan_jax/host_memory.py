"""Handing the memory XLA's compiler freed back to the operating system.

Compiling a birds-sized step allocates about a gigabyte of small objects on the
C heap and frees them when it ends. glibc keeps freed heap pages mapped, and the
step's large buffers are new mappings, not those pages: without a trim, the
compiler's garbage stays resident under every step (birds, batch 2: peak
6.2 GiB without, 5.1 GiB with; docs/benchmarks.md).
"""

import ctypes
import ctypes.util
import functools


@functools.lru_cache(maxsize=None)
def _malloc_trim():
  name = ctypes.util.find_library("c")
  try:
    return ctypes.CDLL(name).malloc_trim if name else None
  except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
    return None


def release() -> bool:
  """Returns freed C-heap pages to the OS (glibc's `malloc_trim(0)`); False
  where the C library has no such call."""
  trim = _malloc_trim()
  if trim is None:
    return False
  trim(0)
  return True


def compile_and_release(jitted, *args):
  """`jitted` compiled for `args` (ahead of time, nothing runs), with the
  compiler's freed memory released before the first step allocates its own."""
  compiled = jitted.lower(*args).compile()
  release()
  return compiled
