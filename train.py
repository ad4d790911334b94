"""Trains MirrorGAN: `python train.py --config configs/shapes.py --workdir W`.

The program is mirrorgan_jax/train_main.py (also `mirrorgan-train` once the
package is installed); this file runs it from a checkout.
"""

import runpy

if __name__ == "__main__":
  runpy.run_module("mirrorgan_jax.train_main", run_name="__main__", alter_sys=True)
