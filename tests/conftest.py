"""Test set-up: 8 fake CPU devices, so data-parallel code runs as on a pod slice.

Must run before JAX initialises its backends; single-device tests build a mesh
over the first device only.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)

