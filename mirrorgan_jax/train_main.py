"""Trains MirrorGAN: the damsm, stream and gan phases, resumable.

  python train.py --config configs/shapes.py --workdir runs/shapes
  python train.py --config configs/birds.py --workdir runs/birds \
      --config.data.manual_dir=~/data/birds
  python train.py --config configs/birds.py --workdir runs/birds --config.train.phases=gan

  (installed: mirrorgan-train --config ... --workdir ...)

Rerunning the same command resumes from the newest checkpoint; completed
phases are skipped. SIGTERM or Ctrl-C saves a checkpoint and exits cleanly.
A mistake in the command, the configuration or the dataset folder is one
message naming the flag, field or file, and exit status 2. A checkpoint that
cannot be written (read-only or full folder) is one message naming the
folder, and exit status 1; the checkpoints already written are kept.
"""

import logging
import os
import sys

from absl import app, flags
from absl import logging as absl_logging

from mirrorgan_jax import cli, host_memory

FLAGS = flags.FLAGS


DEFAULT_CONFIG = cli.default_config("shapes.py")
WRITE_FAILED = 1


def _define_flags() -> None:
  from ml_collections import config_flags  # pylint: disable=import-outside-toplevel
  config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "Training configuration.")
  flags.DEFINE_string("workdir", None, "Where checkpoints, logs and samples go.")
  flags.mark_flags_as_required(["workdir"])


def use_compilation_cache(config, workdir: str) -> str:
  """Points JAX's persistent compilation cache at `config.train.compilation_cache`
  (relative to the workdir); returns the folder, or "" when there is none or
  the environment already chose one (JAX_COMPILATION_CACHE_DIR)."""
  folder = config.train.get("compilation_cache", "")
  if not folder or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return ""
  folder = os.path.join(os.path.expanduser(workdir), os.path.expanduser(folder))
  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update("jax_compilation_cache_dir", folder)
  return folder


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected argument(s) {' '.join(argv[1:])}: flags are --config=FILE, "
             "--workdir=DIR and --config.FIELD=VALUE")
  why = cli.folder_problem("--workdir", FLAGS.workdir)
  if why:
    cli.fail(why)
  # pylint: disable=import-outside-toplevel
  from mirrorgan_jax.config_check import ConfigError, check_config
  try:
    check_config(FLAGS.config)  # before jax starts (distributed reads the config)
  except ConfigError as e:
    cli.fail(str(e))
  # Orbax and JAX log every checkpoint step at INFO; the run's own events
  # (resume, skip, growth, stop) are warnings, the losses go to the bar and logs.
  absl_logging.set_verbosity(absl_logging.WARNING)
  from mirrorgan_jax import distributed
  distributed.maybe_initialize(FLAGS.config)
  use_compilation_cache(FLAGS.config, FLAGS.workdir)
  # Imported after: jax.distributed must start before any array exists.
  from mirrorgan_jax import trainer
  from mirrorgan_jax.checkpointing import CheckpointError, CheckpointWriteError
  from mirrorgan_jax.data.attngan_tree import DatasetTreeError
  from mirrorgan_jax.data.sources import DatasetNotPrepared
  from mirrorgan_jax.data.vocab import VocabularyError
  try:
    trainer.run(FLAGS.config, FLAGS.workdir)
  except trainer.Preempted as e:
    logging.warning("%s", e)
    sys.exit(0)
  except CheckpointWriteError as e:
    # Orbax's threads of a failed save never finish, and the interpreter would
    # wait for them at exit forever: report, then leave at once.
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(WRITE_FAILED)  # pylint: disable=protected-access
  # The user's configuration, dataset folder or checkpoints: the message, not a traceback.
  except (ConfigError, DatasetTreeError, DatasetNotPrepared, VocabularyError,
          CheckpointError) as e:
    cli.fail(str(e))


if __name__ == "__main__":
  host_memory.restart_with_huge_pages()
  app.run(main, flags_parser=cli.config_flags_parser(
      _define_flags, DEFAULT_CONFIG, "python train.py"))
