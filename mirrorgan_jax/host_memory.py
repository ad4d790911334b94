"""Host memory for XLA:CPU: handing the compiler's freed memory back to the
operating system, and backing the step's working memory with huge pages.

Compiling a birds-sized step allocates about a gigabyte of small objects on the
C heap and frees them when it ends. glibc keeps freed heap pages mapped, and the
step's large buffers are new mappings, not those pages: without a trim, the
compiler's garbage stays resident under every step (birds, batch 2: peak
6.2 GiB without, 5.1 GiB with; docs/benchmarks.md).
"""

import ctypes
import ctypes.util
import functools
import os
import sys


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


# glibc 2.35+ then madvise()s its large mappings for transparent huge pages. XLA:CPU
# maps a step's temporaries afresh every step; in 4 KB pages that was 385,000 page
# faults per stage64 step (shapes step: 0.80x the time with them; docs/benchmarks.md).
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
HUGE_PAGES_SWITCH = "MIRRORGAN_HUGE_PAGES"  # "0": leave the process as started
_THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"


def thp_mode(path: str = _THP_SETTING) -> str:
  """The kernel's transparent-huge-page mode ("always", "madvise", "never"), or ""
  where there is none (not Linux)."""
  try:
    with open(path, encoding="ascii") as f:
      text = f.read()
  except OSError:
    return ""
  start, end = text.find("["), text.find("]")
  return text[start + 1:end] if 0 <= start < end else ""


def glibc_version() -> tuple[int, ...]:
  """(2, 36) for glibc 2.36; () for another C library."""
  try:
    name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
  except (AttributeError, ValueError, OSError):
    return ()
  if name != "glibc":
    return ()
  return tuple(int(part) for part in version.split(".") if part.isdigit())


def huge_pages_tunables(environ, mode: str, libc: tuple[int, ...]) -> str | None:
  """The GLIBC_TUNABLES value to restart with, or None when a restart would change
  nothing: already set, switched off, not glibc 2.35+, or a kernel whose huge pages
  are "always" (every process has them) or "never"."""
  current = environ.get("GLIBC_TUNABLES", "")
  if (environ.get(HUGE_PAGES_SWITCH, "1") == "0" or "glibc.malloc.hugetlb=" in current
      or libc < (2, 35) or mode != "madvise"):
    return None
  return f"{current}:{HUGE_PAGES_TUNABLE}" if current else HUGE_PAGES_TUNABLE


def restart_with_huge_pages() -> None:
  """Runs this program again, in this process (exec: same pid, arguments,
  standard streams), with glibc's huge-page tunable, where that would change
  anything (see huge_pages_tunables); else returns. glibc reads the tunable only
  when a process starts, so programs call this first thing. Results are the same
  either way: only where memory lies changes."""
  tunables = huge_pages_tunables(os.environ, thp_mode(), glibc_version())
  if tunables is None or not getattr(sys, "orig_argv", None):
    return
  environ = dict(os.environ, GLIBC_TUNABLES=tunables)
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)
  except OSError:  # cannot run the interpreter again: go on as started
    return
