"""Host memory (host_memory.py): releasing the C heap's freed pages; huge pages."""

import ctypes
import ctypes.util
import os
import subprocess
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


@pytest.mark.parametrize("environ, mode, libc, expected", [
    ({}, "madvise", (2, 36), "glibc.malloc.hugetlb=1"),
    ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "madvise", (2, 35),
     "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"),
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "madvise", (2, 36), None),  # the user's choice
    ({"MIRRORGAN_HUGE_PAGES": "0"}, "madvise", (2, 36), None),
    ({}, "always", (2, 36), None),  # every process has them already
    ({}, "never", (2, 36), None),
    ({}, "", (2, 36), None),  # no such kernel setting: not Linux
    ({}, "madvise", (2, 34), None),  # glibc before the tunable
    ({}, "madvise", (), None),  # musl
])
def test_huge_pages_tunables(environ, mode, libc, expected):
  assert host_memory.huge_pages_tunables(environ, mode, libc) == expected


def test_thp_mode_reads_the_bracketed_word(tmp_path):
  setting = tmp_path / "enabled"
  setting.write_text("always [madvise] never\n")
  assert host_memory.thp_mode(str(setting)) == "madvise"
  assert host_memory.thp_mode(str(tmp_path / "absent")) == ""


_CHILD = """
import ctypes, ctypes.util, os, resource, sys
from mirrorgan_jax import host_memory
host_memory.restart_with_huge_pages()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
# 256 MiB from malloc, as XLA:CPU's buffers come (numpy asks for huge pages itself)
ctypes.memset(libc.malloc(256 << 20), 1, 256 << 20)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(os.environ.get("GLIBC_TUNABLES", ""), faults, sys.argv[1:], sys.stdin.read(), sep="|")
"""


@pytest.mark.parametrize("switch", ["1", "0"])
def test_restart_with_huge_pages_runs_the_program_again_with_them(switch):
  """The program runs again with the tunable, its arguments and standard input,
  and a large buffer is then faulted in 2 MB at a time, not 4 KB (65,536 faults)."""
  environ = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
  environ["MIRRORGAN_HUGE_PAGES"] = switch
  applies = switch == "1" and host_memory.huge_pages_tunables(
      environ, host_memory.thp_mode(), host_memory.glibc_version()) is not None
  if switch == "1" and not applies:
    pytest.skip("no glibc 2.35+ with madvise-mode transparent huge pages here")
  out = subprocess.run([sys.executable, "-c", _CHILD, "--flag", "x y"], input="stdin text",
                       capture_output=True, text=True, env=environ, check=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  tunables, faults, argv, stdin = out.stdout.strip().split("|")
  assert (argv, stdin) == ("['--flag', 'x y']", "stdin text")
  if applies:
    assert tunables == "glibc.malloc.hugetlb=1"
    assert int(faults) < 65_536 // 4, faults
  else:
    assert tunables == ""
    assert int(faults) >= 65_536, faults
