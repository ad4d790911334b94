"""Deterministic random weights for a PyTorch state dict, from its layout alone.

Deep backbones (ResNet-152, Inception-v3) are too large to commit as weight
files. `tools/make_torch_fixtures.py` fills the official modules with
`seeded_state(layout, seed)`, records their outputs and commits only the layout
(name, shape, dtype per tensor), the seed and the outputs; the tests rebuild the
very same tensors here, with numpy alone. Scales keep activations of order one
through 150 layers: He-normal weights, BatchNorm scales in [0.2, 0.6], running
variances in [0.5, 1.5].
"""

import numpy as np

Layout = list[tuple[str, tuple[int, ...], str]]


def layout_of(state: dict) -> Layout:
  """[(name, shape, dtype name)] of a state dict of numpy arrays (or tensors
  turned into numpy), in its order."""
  return [(k, tuple(int(d) for d in np.shape(v)), str(np.asarray(v).dtype))
          for k, v in state.items()]


def seeded_state(layout, seed: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  out = {}
  for name, shape, dtype in layout:
    shape = tuple(shape)
    leaf = name.rsplit(".", 1)[-1]
    if not np.issubdtype(np.dtype(dtype), np.floating):  # num_batches_tracked
      out[name] = np.zeros(shape, dtype)
      continue
    if leaf == "running_var":
      v = rng.uniform(0.5, 1.5, shape)
    elif leaf == "running_mean":
      v = rng.normal(0.0, 0.1, shape)
    elif leaf == "weight" and len(shape) == 1:  # BatchNorm scale
      v = rng.uniform(0.2, 0.6, shape)
    elif leaf.startswith("bias"):
      v = rng.normal(0.0, 0.05, shape)
    else:  # conv, linear, embedding, LSTM weights: He-normal over fan-in
      fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
      v = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    out[name] = v.astype(dtype)
  return out
