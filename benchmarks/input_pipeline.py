"""Examples per second of the input pipeline, to compare with the training
step's images per second (benchmarks/step_time.py).

  python -m benchmarks.input_pipeline                       # both cases below
  python -m benchmarks.input_pipeline --cases=cub --workers=4

Cases: `shapes64` renders the embedded dataset at the shapes config's stages (16
and 32 px today), over one epoch as it makes every example and again with
every example already made (the source's cache); `cub` builds a CUB-like tree of generated JPEGs (500x375, ten
captions each, boxes) in a temporary folder, prepares it with the TFDS builder
and runs the official preprocessing to 64, 128 and 256 px. Each case prints
examples/s after `--warmup` batches, over `--batches` batches.
"""

import os
import tempfile
import time

from absl import app, flags
import numpy as np
from PIL import Image

from configs import birds, shapes
from mirrorgan_jax.data import pipeline, safe_pickle, tfds_builders

FLAGS = flags.FLAGS
flags.DEFINE_list("cases", ["shapes64", "cub"], "Which pipelines to time.")
flags.DEFINE_integer("workers", 2, "Worker processes for the cub case (0 = main process).")
flags.DEFINE_integer("batches", 20, "Timed batches.")
flags.DEFINE_integer("warmup", 3, "Untimed batches first.")
flags.DEFINE_integer("cub_images", 96, "Images in the generated CUB-like tree.")


def make_cub_like_tree(root: str, n: int) -> int:
  """n photos-sized JPEGs of 4 classes with captions and boxes; returns the
  vocabulary size."""
  rng = np.random.default_rng(0)
  keys, classes, lines_img, lines_box = [], [], [], []
  words = [f"w{i}" for i in range(300)]
  for i in range(n):
    cls = i % 4 + 1
    key = f"{cls:03d}.Class{cls}/Bird_{i:05d}"
    keys.append(key)
    classes.append(cls)
    path = os.path.join(root, "CUB_200_2011", "images", key + ".jpg")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    yy, xx = np.mgrid[0:375, 0:500]
    img = np.stack([xx % 256, yy % 256, (xx * yy) % 256], -1).astype(np.uint8)
    img = (img + rng.integers(0, 40, img.shape)).astype(np.uint8)
    Image.fromarray(img).save(path, quality=90)
    lines_img.append(f"{i + 1} {key}.jpg")
    lines_box.append(f"{i + 1} 60.0 27.0 325.0 304.0")
    text = os.path.join(root, "text", key + ".txt")
    os.makedirs(os.path.dirname(text), exist_ok=True)
    with open(text, "w") as f:
      f.write("\n".join(" ".join(rng.choice(words, 16)) for _ in range(10)) + "\n")
  for name, lines in (("images.txt", lines_img), ("bounding_boxes.txt", lines_box)):
    with open(os.path.join(root, "CUB_200_2011", name), "w") as f:
      f.write("\n".join(lines) + "\n")
  split = n * 3 // 4
  for sub in ("train", "test"):
    os.makedirs(os.path.join(root, sub), exist_ok=True)
  safe_pickle.dump(keys[:split], os.path.join(root, "train", "filenames.pickle"))
  safe_pickle.dump(classes[:split], os.path.join(root, "train", "class_info.pickle"))
  safe_pickle.dump(keys[split:], os.path.join(root, "test", "filenames.pickle"))
  safe_pickle.dump(classes[split:], os.path.join(root, "test", "class_info.pickle"))
  return len(words) + 1


def time_pipeline(name, config, workers):
  _, ds = pipeline.from_config(config)
  it = pipeline.iterator(ds, workers=workers, prefetch=config.data.prefetch)
  for _ in range(FLAGS.warmup):
    next(it)
  start = time.perf_counter()
  for _ in range(FLAGS.batches):
    next(it)
  seconds = time.perf_counter() - start
  if hasattr(it, "close"):
    it.close()
  n = FLAGS.batches * config.batch_size
  sizes = "/".join(str(config.model.base_size * 2**i) for i in range(config.model.num_stages))
  print(f"{name}: {n / seconds:8.1f} examples/s  ({sizes} px, batch {config.batch_size}, "
        f"workers {workers}, {FLAGS.batches} batches in {seconds:.2f} s)")


def main(argv):
  del argv
  print(f"{os.cpu_count()} CPUs")
  for case in FLAGS.cases:
    if case == "shapes64":
      config = shapes.get_config()
      # One epoch is what is timed: the second pass finds every example made
      # (data.shapes.cache_mb), as the job's later phases and epochs do.
      config.data.shapes.train_size = (FLAGS.warmup + FLAGS.batches) * config.batch_size
      time_pipeline("shapes64, first made", config, config.data.workers)
      time_pipeline("shapes64, made before", config, config.data.workers)
    elif case == "cub":
      with tempfile.TemporaryDirectory() as tmp:
        root, data_dir = os.path.join(tmp, "birds"), os.path.join(tmp, "tfds")
        vocab = make_cub_like_tree(root, FLAGS.cub_images)
        start = time.perf_counter()
        tfds_builders.prepare("birds", root, data_dir)
        print(f"cub: prepared {FLAGS.cub_images} images in {time.perf_counter() - start:.1f} s")
        config = birds.get_config()
        config.text.vocab_size = vocab
        config.data.data_dir = data_dir
        time_pipeline("cub", config, FLAGS.workers)
    else:
      raise app.UsageError(f"unknown case {case!r}: use shapes64 or cub")


if __name__ == "__main__":
  app.run(main)
