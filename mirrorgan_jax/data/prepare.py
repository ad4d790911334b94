"""Validates a CUB or COCO folder in the AttnGAN layout and writes the TFDS
dataset (array_record; no TensorFlow needed).

  python -m mirrorgan_jax.data.prepare --dataset=birds --manual_dir=~/data/birds \
      --data_dir=~/tensorflow_datasets

Every problem in the folder is listed, each with its file, before anything is
written. Training with config.data.manual_dir set runs the same on first use.
"""

from absl import app, flags

from mirrorgan_jax.data import tfds_builders

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", None, list(tfds_builders.BUILDERS), "Which dataset.")
flags.DEFINE_string("manual_dir", None, "Your folder in the AttnGAN layout.")
flags.DEFINE_string("data_dir", "~/tensorflow_datasets", "Where TFDS writes the dataset.")
flags.DEFINE_bool("check_images", True, "Decode every image while validating.")
flags.DEFINE_integer("workers", 8, "Threads decoding images during validation.")
flags.mark_flags_as_required(["dataset", "manual_dir"])


def main(argv):
  del argv
  b = tfds_builders.prepare(FLAGS.dataset, FLAGS.manual_dir, FLAGS.data_dir,
                            check_images=FLAGS.check_images, workers=FLAGS.workers)
  splits = ", ".join(f"{s}: {b.info.splits[s].num_examples}" for s in b.info.splits)
  print(f"{b.data_dir}: {splits}; vocabulary {len(b.info.metadata['vocabulary'])} words "
        f"from {b.info.metadata['vocabulary_file']}")


if __name__ == "__main__":
  app.run(main)
