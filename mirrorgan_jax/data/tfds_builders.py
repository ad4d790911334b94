"""TFDS builders for CUB-200 birds and COCO-2014 in the AttnGAN layout.

They read the user's existing folder through `manual_dir`, validate it whole
(`attngan_tree.read_tree`) and write array_record files, which needs no
TensorFlow. Records keep the order of `filenames.pickle` (shuffling disabled),
so record i of a split is key i of the official loaders. Each record holds the
original JPEG bytes (not re-encoded), the key, the class id, all captions as
text and as ids of the captions pickle, and for CUB the bounding box. The
vocabulary and every record's class id are in the dataset's metadata.
"""

import logging
import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging as absl_logging

from mirrorgan_jax.data import attngan_tree


class _NotYetPrepared(logging.Filter):
  """Drops TFDS's warning that a dataset folder has no dataset_info.json: it
  only means the dataset is not prepared yet, which `is_prepared` tells."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.msg != "Variant folder %s has no %s"


absl_logging.get_absl_logger().addFilter(_NotYetPrepared())


class _AttnganBuilder(tfds.core.GeneratorBasedBuilder):
  KIND = ""
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Point manual_dir at your dataset folder in the AttnGAN layout (the folder "
      "holding captions.pickle, train/, test/ and text/); see the project README.")
  check_images = True  # decode every image during validation
  workers = 8  # threads for that check
  validated_tree = None  # the validated folder, when `prepare` has read it already

  def _info(self):
    layout = attngan_tree.LAYOUTS[self.KIND]
    features = {
        "image": tfds.features.Image(shape=(None, None, 3)),
        "key": tfds.features.Text(),
        "class_id": tfds.features.Scalar(dtype=np.int32),
        # Captions as ids, concatenated; caption k is ids[sum(lens[:k]):][:lens[k]].
        "caption_ids": tfds.features.Tensor(shape=(None,), dtype=np.int32),
        "caption_lens": tfds.features.Tensor(shape=(layout.captions_per_image,),
                                             dtype=np.int32),
        "captions": tfds.features.Sequence(tfds.features.Text()),
    }
    if layout.has_bbox:
      features["bbox"] = tfds.features.Tensor(shape=(4,), dtype=np.int32)
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__,
        features=tfds.features.FeaturesDict(features),
        metadata=tfds.core.MetadataDict(),
        # Record i of a split is key i of filenames.pickle, as in the official
        # loaders: no shuffling, and example keys are the indices.
        disable_shuffling=True)

  def _split_generators(self, dl_manager):
    tree = self.validated_tree or attngan_tree.read_tree(
        dl_manager.manual_dir, self.KIND, check_images=self.check_images, workers=self.workers)
    self.info.metadata.update(
        vocabulary=list(tree.vocab.words),
        vocabulary_file=os.path.basename(tree.vocab_file),
        captions_per_image=attngan_tree.LAYOUTS[self.KIND].captions_per_image,
        class_ids={s: [r.class_id for r in recs] for s, recs in tree.splits.items()})
    return {s: self._generate_examples(recs) for s, recs in tree.splits.items()}

  def _generate_examples(self, records):
    for index, r in enumerate(records):
      example = {
          "image": r.image_path,
          "key": r.key,
          "class_id": r.class_id,
          "caption_ids": np.asarray([i for c in r.caption_ids for i in c], np.int32),
          "caption_lens": np.asarray([len(c) for c in r.caption_ids], np.int32),
          "captions": list(r.captions),
      }
      if r.bbox is not None:
        example["bbox"] = np.asarray(r.bbox, np.int32)
      yield index, example


class AttnganBirds(_AttnganBuilder):
  """CUB-200-2011 with the Reed et al. captions, in the AttnGAN layout."""
  KIND = "birds"


class AttnganCoco(_AttnganBuilder):
  """COCO-2014 captions, in the AttnGAN layout (train2014 and val2014 as test)."""
  KIND = "coco"


BUILDERS = {"birds": AttnganBirds, "coco": AttnganCoco}


def builder(kind: str, data_dir: str) -> _AttnganBuilder:
  if kind not in BUILDERS:
    raise ValueError(f"no TFDS builder for dataset {kind!r}: use one of {tuple(BUILDERS)}")
  return BUILDERS[kind](data_dir=os.path.expanduser(data_dir), file_format="array_record")


def _folders_to_create(b: _AttnganBuilder) -> list[str]:
  """The folders TFDS makes while writing (innermost first) that do not exist yet."""
  root = os.path.dirname(os.path.dirname(os.fspath(b.data_dir)))  # data_dir
  downloads = os.path.join(root, "downloads")
  candidates = [os.path.dirname(os.fspath(b.data_dir)), os.path.join(downloads, "extracted"),
                downloads, root]
  out, parent = [], root
  while parent and not os.path.exists(parent) and os.path.dirname(parent) != parent:
    candidates.append(parent)
    parent = os.path.dirname(parent)
  for path in candidates:
    if not os.path.exists(path) and path not in out:
      out.append(path)
  return out


def _remove_if_empty(folders) -> None:
  for path in folders:  # innermost first
    try:
      os.rmdir(path)  # only when empty: nothing written is removed
    except OSError:
      pass


def prepare(kind: str, manual_dir: str, data_dir: str, check_images: bool = True,
            workers: int = 8) -> _AttnganBuilder:
  """Validates `manual_dir` and writes the dataset under `data_dir` (once).

  The folder is validated before anything is created (a DatasetTreeError lists
  every problem); a write that fails or is interrupted leaves no folder it made
  behind (TFDS removes its incomplete copy; the empty folders around it go too).
  """
  b = builder(kind, data_dir)
  if b.is_prepared():
    return b
  manual_dir = os.path.abspath(os.path.expanduser(os.fspath(manual_dir)))
  b.validated_tree = attngan_tree.read_tree(manual_dir, kind, check_images=check_images,
                                            workers=workers)
  b.check_images, b.workers = check_images, workers
  created = _folders_to_create(b)
  try:
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir))
  finally:
    _remove_if_empty(created)  # also after success: TFDS's unused downloads/extracted
    b.validated_tree = None
  return b
