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

import os

from absl import app, flags
from absl import logging as absl_logging

from mirrorgan_jax import cli
from mirrorgan_jax.checkpointing import USER_ERRORS
from mirrorgan_jax.convert.commands import convert

FLAGS = flags.FLAGS
DEFAULT_CONFIG = cli.default_config("birds.py")


def _define_flags() -> None:
  from ml_collections import config_flags  # pylint: disable=import-outside-toplevel
  config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "Sizes the networks.")
  flags.DEFINE_string("out", None, "Workdir (networks) or .npz (backbones) to write.")
  flags.DEFINE_string("vocab", None, "damsm: the captions.pickle the encoders were trained with.")
  flags.DEFINE_integer("step", 0, "generator: the iteration to record (continue counting).")
  flags.mark_flags_as_required(["out"])


def main(argv):
  absl_logging.set_verbosity(absl_logging.WARNING)
  if len(argv) < 3:
    cli.fail("usage: python -m mirrorgan_jax.convert KIND FILE... --out PATH "
             "[--config CONFIG] (python -m mirrorgan_jax.convert --help)")
  kind, files = argv[1], argv[2:]
  try:
    written = convert(kind, files, FLAGS.config, os.path.expanduser(FLAGS.out), FLAGS.vocab,
                      FLAGS.step)
  except USER_ERRORS as e:
    cli.fail(str(e))
  for path in written:
    print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  app.run(main, flags_parser=cli.config_flags_parser(
      _define_flags, DEFAULT_CONFIG, "python -m mirrorgan_jax.convert"))
