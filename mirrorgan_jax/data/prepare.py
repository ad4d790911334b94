"""Validates a CUB or COCO folder in the AttnGAN layout and writes the TFDS
dataset (array_record; no TensorFlow needed).

  python -m mirrorgan_jax.data.prepare --dataset=birds --manual_dir=~/data/birds \
      --data_dir=~/tensorflow_datasets

Every problem in the folder is listed, each with its file, before anything is
written, and the command exits with status 2 (as for a mistake in its flags);
a failed run leaves no folder behind. Training with config.data.manual_dir set
runs the same on first use.
"""

from absl import app, flags

from mirrorgan_jax import cli
from mirrorgan_jax.data import attngan_tree

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", None, list(attngan_tree.LAYOUTS), "Which dataset.")
flags.DEFINE_string("manual_dir", None, "Your folder in the AttnGAN layout.")
flags.DEFINE_string("data_dir", "~/tensorflow_datasets", "Where TFDS writes the dataset.")
flags.DEFINE_bool("check_images", True, "Decode every image while validating.")
flags.DEFINE_integer("workers", 8, "Threads decoding images during validation.")
flags.mark_flags_as_required(["dataset", "manual_dir"])

def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing; a missing, unknown or malformed flag is one message."""
  # pylint: disable-next=import-outside-toplevel
  from mirrorgan_jax.config_check import flag_error_message
  try:
    return FLAGS(argv)
  except flags.Error as e:
    cli.fail(flag_error_message(e, argv, flag=None) or str(e))


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected argument(s) {' '.join(argv[1:])}: use --dataset, --manual_dir and "
             "--data_dir (--helpshort lists the flags)")
  why = cli.folder_problem("--data_dir", FLAGS.data_dir)
  if why:
    cli.fail(why)
  from mirrorgan_jax.data import tfds_builders  # pylint: disable=import-outside-toplevel
  try:
    b = tfds_builders.prepare(FLAGS.dataset, FLAGS.manual_dir, FLAGS.data_dir,
                              check_images=FLAGS.check_images, workers=FLAGS.workers)
  except attngan_tree.DatasetTreeError as e:
    cli.fail(str(e))
  splits = ", ".join(f"{s}: {b.info.splits[s].num_examples}" for s in b.info.splits)
  print(f"{b.data_dir}: {splits}; vocabulary {len(b.info.metadata['vocabulary'])} words "
        f"from {b.info.metadata['vocabulary_file']}")


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
