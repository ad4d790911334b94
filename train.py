"""Trains MirrorGAN: the damsm, stream and gan phases, resumable.

  python train.py --config configs/shapes.py --workdir runs/shapes
  python train.py --config configs/birds.py --workdir runs/birds \
      --config.data.manual_dir=~/data/birds
  python train.py --config configs/birds.py --workdir runs/birds --config.train.phases=gan

Rerunning the same command resumes from the newest checkpoint; completed
phases are skipped. SIGTERM or Ctrl-C saves a checkpoint and exits cleanly.
"""

import logging
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/shapes.py", "Training configuration.")
flags.DEFINE_string("workdir", None, "Where checkpoints, logs and samples go.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  del argv
  # Orbax and JAX log every checkpoint step at INFO; the run's own events
  # (resume, skip, growth, stop) are warnings, the losses go to the bar and logs.
  absl_logging.set_verbosity(absl_logging.WARNING)
  from mirrorgan_jax import distributed  # pylint: disable=import-outside-toplevel
  distributed.maybe_initialize(FLAGS.config)
  # Imported after: jax.distributed must start before any array exists.
  from mirrorgan_jax import trainer  # pylint: disable=import-outside-toplevel
  from mirrorgan_jax.config_check import ConfigError  # pylint: disable=import-outside-toplevel
  try:
    trainer.run(FLAGS.config, FLAGS.workdir)
  except trainer.Preempted as e:
    logging.warning("%s", e)
    sys.exit(0)
  except ConfigError as e:  # the user's configuration: the message, not a traceback
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
