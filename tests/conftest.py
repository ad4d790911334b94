"""Test set-up: 8 fake CPU devices, so data-parallel code runs as on a pod slice.

Must run before JAX initialises its backends; single-device tests build a mesh
over the first device only.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)

# Compiled programs are cached on disk across tests, test processes and runs:
# the training-program tests compile the same steps in several fresh runs.
import tempfile  # noqa: E402

jax.config.update("jax_compilation_cache_dir",
                  os.path.join(tempfile.gettempdir(), "mirrorgan_jax_jit_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
