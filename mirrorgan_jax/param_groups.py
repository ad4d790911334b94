"""Parameter trees: splitting frozen from trained parts, and grafting a smaller
trained tree into a larger fresh one (staged growth).

Frozen backbones (ImageNet Inception-v3 for DAMSM, ResNet-152 for STREAM) are
split off before differentiation, so XLA computes no gradient for them at all
instead of computing it and throwing it away.
"""

from typing import Any, Sequence

import numpy as np

PyTree = Any


def split(params: dict, frozen: Sequence[str]) -> tuple[dict, dict]:
  """(trained, frozen) halves of a parameter dict by top-level module name."""
  trained = {k: v for k, v in params.items() if k not in frozen}
  held = {k: v for k, v in params.items() if k in frozen}
  return trained, held


def merge(trained: dict, held: dict) -> dict:
  return {**trained, **held}


def graft(fresh: PyTree, trained: PyTree, path: str = "") -> PyTree:
  """`fresh` with every entry that `trained` also has taken from `trained`.

  Dicts are matched by key (new modules keep their fresh values), tuples and
  optimizer states element by element; leaves must agree in shape."""
  if isinstance(fresh, dict) and isinstance(trained, dict):
    extra = set(trained) - set(fresh)
    if extra:
      raise ValueError(f"{path or 'tree'}: trained entries {sorted(extra)} do not exist "
                       "in the grown model")
    return {k: graft(v, trained[k], f"{path}/{k}") if k in trained else v
            for k, v in fresh.items()}
  if isinstance(fresh, tuple) and isinstance(trained, tuple):
    if type(fresh) is not type(trained) or len(fresh) != len(trained):
      raise ValueError(f"{path}: {type(trained).__name__} of {len(trained)} cannot "
                       f"fill {type(fresh).__name__} of {len(fresh)}")
    items = [graft(a, b, f"{path}[{i}]") for i, (a, b) in enumerate(zip(fresh, trained))]
    return type(fresh)(*items) if hasattr(fresh, "_fields") else tuple(items)
  if np.shape(fresh) != np.shape(trained):
    raise ValueError(f"{path}: trained shape {np.shape(trained)} != grown shape "
                     f"{np.shape(fresh)}")
  return trained
