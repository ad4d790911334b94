"""Shared test utilities."""

import jax
import numpy as np


def count_params(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
