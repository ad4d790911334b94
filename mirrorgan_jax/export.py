"""A trained (or converted) model -> official PyTorch state dicts. No PyTorch needed.

  python -m mirrorgan_jax.export generator --workdir W --out netG.pth
  python -m mirrorgan_jax.export discriminators --workdir W --out DIR   # netD0.pth, netD1.pth, ...
  python -m mirrorgan_jax.export damsm --workdir W --out DIR    # text_encoder.pth, image_encoder.pth
  python -m mirrorgan_jax.export stream --workdir W --out DIR   # caption_cnn.pth, caption_rnn.pth

The files load with `torch.load` and the official modules' `load_state_dict(...,
strict=True)` (G_NET, D_NET64/128/256, RNN_ENCODER, CNN_ENCODER, CAPTION_CNN,
CAPTION_RNN) at the sizes of the run's config. The generator file holds the EMA
parameters with the live BatchNorm statistics, as the official `netG_epoch_N.pth`.
LSTM biases come back as their sum in `bias_ih_l0` with `bias_hh_l0` zero
(the same network). `--workdir` takes a workdir, a phase's checkpoint folder or
one checkpoint; `--checkpoint best` picks the best instead of the newest.
"""

import argparse
import os
import sys

from mirrorgan_jax import convert as cv
from mirrorgan_jax.checkpointing import USER_ERRORS
from mirrorgan_jax.convert import workdirs

# kind -> [(network, file name in --out)]; one file: --out is that file.
KINDS = {
    "generator": [("generator", None)],
    "discriminators": [("discriminators", "netD{}.pth")],
    "damsm": [("text_encoder", "text_encoder.pth"), ("image_encoder", "image_encoder.pth")],
    "stream": [("captioner", ("caption_cnn.pth", "caption_rnn.pth"))],
}


def export(kind: str, location: str, out: str, which: str = "latest") -> list[str]:
  """Writes the PyTorch file(s) of `kind`; returns their paths."""
  if kind not in KINDS:
    raise ValueError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
  written = []
  for network, names in KINDS[kind]:
    variables, config, _ = workdirs.read_variables(location, network, which)
    if network == "text_encoder":
      cv.core.require_official_sentence_code(config, f"{location}: its text encoder")
    if names is None:
      paths = out
    elif network == "discriminators":
      paths = [os.path.join(out, names.format(i)) for i in range(len(variables))]
    elif isinstance(names, tuple):
      paths = [os.path.join(out, n) for n in names]
    else:
      paths = os.path.join(out, names)
    targets = paths if isinstance(paths, list) else [paths]
    for p in targets:
      os.makedirs(os.path.dirname(os.path.abspath(p)), exist_ok=True)
    cv.to_torch(network, variables, config, paths)
    written += targets
  return written


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m mirrorgan_jax.export",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("kind", choices=tuple(KINDS))
  parser.add_argument("--workdir", required=True,
                      help="a workdir, a phase's checkpoint folder, or one checkpoint")
  parser.add_argument("--out", required=True,
                      help="the .pth (generator) or a folder (the other kinds)")
  parser.add_argument("--checkpoint", default="latest", choices=("latest", "best"))
  args = parser.parse_args(argv)
  try:
    written = export(args.kind, args.workdir, os.path.expanduser(args.out), args.checkpoint)
  except USER_ERRORS as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  for p in written:
    print(f"wrote {p}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
