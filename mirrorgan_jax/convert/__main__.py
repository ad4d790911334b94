"""PyTorch files -> what our programs read. No PyTorch needed.

  python -m mirrorgan_jax.convert KIND FILE... --out PATH [--config CONFIG] [--config.x=v]

  damsm TEXT.pth IMAGE.pth --vocab captions.pickle   AttnGAN's RNN_ENCODER and CNN_ENCODER
      -> PATH/checkpoints/damsm + PATH/vocabulary.json (config.damsm.weights=PATH,
         evaluate --damsm-weights PATH)
  stream CNN.pth RNN.pth         CAPTION_CNN and CAPTION_RNN -> PATH/checkpoints/stream
                                 (config.stream.weights=PATH)
  generator netG_epoch_N.pth [--step S]   G_NET -> a gan checkpoint in PATH, which must
                                 hold the damsm phase (generate / evaluate --workdir PATH,
                                 or train.py --workdir PATH to train on)
  discriminators netD0.pth netD1.pth netD2.pth   into PATH's gan checkpoint
  resnet152 resnet152-*.pth      -> PATH.npz (config.stream.resnet_weights)
  inception inception_v3_google-*.pth | image_encoder200.pth
                                 -> PATH.npz (config.image_encoder.inception_weights)
  fid_inception pt_inception-2015-12-05-*.pth   -> PATH.npz (config.eval.inception_weights)

CONFIG sizes the networks (default configs/birds.py); the vocabulary size is
taken from the files. Every tensor must find its place and every variable must
be filled, or nothing is written.
"""

import json
import os
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from mirrorgan_jax import convert as cv
from mirrorgan_jax.checkpointing import CheckpointError
from mirrorgan_jax.convert import backbones, torch_pickle, workdirs
from mirrorgan_jax.data import vocab as vocab_lib
from mirrorgan_jax.metrics import inception_net

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/birds.py", "Sizes the networks.")
flags.DEFINE_string("out", None, "Workdir (networks) or .npz (backbones) to write.")
flags.DEFINE_string("vocab", None, "damsm: the captions.pickle the encoders were trained with.")
flags.DEFINE_integer("step", 0, "generator: the iteration to record (continue counting).")
flags.mark_flags_as_required(["out"])

FILES = {"damsm": 2, "stream": 2, "generator": 1, "resnet152": 1, "inception": 1,
         "fid_inception": 1}  # discriminators: one per stage


def _usage(msg: str) -> int:
  print(f"error: {msg}", file=sys.stderr)
  return 2


def convert(kind: str, files: list[str], config, out: str, vocab: str | None = None,
            step: int = 0) -> list[str]:
  """Converts and writes; returns what it wrote."""
  want = FILES.get(kind)
  if kind not in FILES and kind != "discriminators":
    raise ValueError(f"unknown kind {kind!r}: use one of "
                     f"{', '.join(list(FILES) + ['discriminators'])}")
  if want is not None and len(files) != want:
    raise ValueError(f"{kind} takes {want} file(s), got {len(files)}")
  sources = [workdirs.file_label(f) for f in files]
  if kind in ("resnet152", "inception"):
    variables = cv.from_torch(kind, files[0])
    backbones.save_npz(out, kind, variables)
    return [out]
  if kind == "fid_inception":
    state = torch_pickle.state_dict(files[0])
    variant, _ = cv.core.fid_variant(state)
    variables = cv.from_torch(kind, state)
    inception_net.save_weights(out, variables, variant)
    return [out]
  states = [torch_pickle.state_dict(f) for f in files]
  if kind == "damsm":
    if not vocab:
      raise ValueError("damsm needs --vocab: the captions.pickle the encoders were trained "
                       "with (its word ids are the embedding's rows)")
    words = vocab_lib.load_captions_pickle(vocab).vocab
    rows = _rows(states[0], "encoder.weight", files[0])
    words.check_size(rows, f"{files[0]} (encoder.weight)")
    config.text.vocab_size = rows
    text = cv.from_torch("text_encoder", states[0], config)
    image = cv.from_torch("image_encoder", states[1], config)
    return [workdirs.write_damsm(out, config, text, image, words, sources),
            os.path.join(out, "vocabulary.json")]
  if kind == "stream":
    config.text.vocab_size = _rows(states[1], "embed.weight", files[1])
    variables = cv.from_torch("captioner", states, config)
    return [workdirs.write_stream(out, config, variables, sources)]
  config.text.vocab_size = _damsm_rows(out, config.text.vocab_size)
  if kind == "generator":
    variables = cv.from_torch("generator", states[0], config)
    return [workdirs.write_generator(out, config, variables, sources, step)]
  variables = cv.from_torch("discriminators", states, config)
  return [workdirs.write_discriminators(out, config, variables, sources)]


def _rows(state: dict, name: str, path: str) -> int:
  if name not in state or getattr(state[name], "ndim", 0) != 2:
    raise ValueError(f"{path}: no {name} matrix (is it the right file?)")
  return int(state[name].shape[0])


def _damsm_rows(out: str, default: int) -> int:
  """The vocabulary size of the damsm phase converted into `out`, if any."""
  path = os.path.join(out, "vocabulary.json")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      return len(json.load(f)["words"])
  return default


def main(argv):
  absl_logging.set_verbosity(absl_logging.WARNING)
  if len(argv) < 3:
    return _usage("usage: python -m mirrorgan_jax.convert KIND FILE... --out PATH "
                  "[--config CONFIG] (python -m mirrorgan_jax.convert --help)")
  kind, files = argv[1], argv[2:]
  try:
    written = convert(kind, files, FLAGS.config, os.path.expanduser(FLAGS.out), FLAGS.vocab,
                      FLAGS.step)
  except (ValueError, OSError, CheckpointError) as e:
    return _usage(str(e))
  for path in written:
    print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  app.run(main)
