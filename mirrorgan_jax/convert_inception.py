"""PyTorch Inception-v3 weights -> our .npz (see metrics/inception_net.py).

    python -m mirrorgan_jax.convert_inception pt_inception-2015-12-05-6726825d.pth inception_fid.npz

pytorch-fid's `pt_inception-2015-12-05` file (the TF FID graph ported to
PyTorch: 1008 classes, the FID variants of blocks 5b-7c) becomes the
`pytorch-fid` variant; torchvision's `inception_v3_google` file (1000 classes)
the `torchvision` variant. PyTorch is not needed: the .pth is read by
`mirrorgan_jax.torch_pickle`. Every tensor must find its place and every
variable must be filled, or nothing is written.
"""

import argparse
import sys

import numpy as np

from mirrorgan_jax import torch_pickle
from mirrorgan_jax.metrics import inception_net

_SKIPPED = ("num_batches_tracked",)


def _target(name: str, value: np.ndarray) -> tuple[str, np.ndarray] | None:
  """One PyTorch state-dict entry -> (our flat key, array), or None to skip."""
  *path, leaf = name.split(".")
  if leaf in _SKIPPED or (path and path[0] == "AuxLogits"):
    return None
  module = "/".join(path)
  if path and path[-1] == "conv" and leaf == "weight":  # OIHW -> HWIO
    return f"params/{module}/kernel", value.transpose(2, 3, 1, 0)
  if path and path[-1] == "bn":
    table = {"weight": ("params", "scale"), "bias": ("params", "bias"),
             "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}
    if leaf in table:
      col, new = table[leaf]
      return f"{col}/{module}/{new}", value
  if path == ["fc"]:
    return ("params/fc/kernel", value.T) if leaf == "weight" else ("params/fc/bias", value)
  raise inception_net.InceptionWeightsError(f"unexpected tensor {name} {value.shape}")


def convert(state: dict, variant: str | None = None, source: str = "state dict"
            ) -> tuple[dict, str]:
  """(variables, variant) from a PyTorch Inception-v3 state dict."""
  fc = state.get("fc.weight")
  classes = 0 if fc is None else fc.shape[0]
  variant = variant or ("pytorch-fid" if classes == inception_net.PYTORCH_FID_CLASSES
                        else "torchvision")
  model = inception_net.model_for(variant, classes)
  expected = inception_net.expected_shapes(model)
  flat = {}
  for name, value in state.items():
    try:
      target = _target(name, np.asarray(value))
    except inception_net.InceptionWeightsError as e:
      raise inception_net.InceptionWeightsError(f"{source}: {e}") from None
    if target is None:
      continue
    key, array = target
    if key not in expected:
      raise inception_net.InceptionWeightsError(
          f"{source}: {name} maps to {key}, which Inception-v3 ({variant}) does not have")
    if array.shape != expected[key]:
      raise inception_net.InceptionWeightsError(
          f"{source}: {name} has shape {value.shape}; {key} needs {expected[key]}")
    flat[key] = array.astype(np.float32)
  missing = sorted(set(expected) - set(flat))
  if missing:
    raise inception_net.InceptionWeightsError(
        f"{source}: no tensor for {len(missing)} variables, e.g. {missing[:5]}")
  return inception_net.unflatten(flat), variant


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m mirrorgan_jax.convert_inception",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("source", help="PyTorch .pth (pytorch-fid or torchvision Inception-v3)")
  parser.add_argument("out", help="the .npz to write")
  parser.add_argument("--variant", choices=inception_net.VARIANTS, default=None,
                      help="default: pytorch-fid for 1008 classes, else torchvision")
  args = parser.parse_args(argv)
  try:
    variables, variant = convert(torch_pickle.state_dict(args.source), args.variant,
                                 args.source)
  except (ValueError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  inception_net.save_weights(args.out, variables, variant)
  print(f"wrote {args.out} (Inception-v3, {variant} variant)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
