"""TFDS builders on tiny AttnGAN trees, the TFDS source, and the pipeline over
them at every stage size. No TensorFlow is installed: array_record only."""

import numpy as np
import pytest
from PIL import Image

from configs import birds, coco
from mirrorgan_jax.data import pipeline, tfds_builders
from mirrorgan_jax.data.attngan_tree import DatasetTreeError, read_tree
from mirrorgan_jax.data.sources import TfdsSource
from mirrorgan_jax.data.vocab import VocabularyError
from tests import attngan_trees as trees


@pytest.fixture(scope="module")
def birds_data(tmp_path_factory):
  root = tmp_path_factory.mktemp("birds")
  data_dir = tmp_path_factory.mktemp("tfds")
  made = trees.make_birds(root)
  tfds_builders.prepare("birds", str(root), str(data_dir))
  return root, data_dir, made


def test_birds_builder_writes_every_record_in_order(birds_data):
  root, data_dir, made = birds_data
  b = tfds_builders.builder("birds", str(data_dir))
  assert b.is_prepared() and b.info.file_format.value == "array_record"
  assert {s: b.info.splits[s].num_examples for s in ("train", "test")} == {"train": 5, "test": 2}
  assert b.info.metadata["vocabulary"] == made["vocab"]
  tree = read_tree(root, "birds")
  for split in ("train", "test"):
    src = TfdsSource("birds", split, str(data_dir))
    assert len(src) == len(made["keys"][split])
    for i, rec in enumerate(tree.splits[split]):
      ex = src.example(i)
      assert ex.key == rec.key and ex.class_id == rec.class_id == src.class_id(i)
      assert ex.bbox == rec.bbox
      assert [c.tolist() for c in ex.caption_ids] == [list(c) for c in rec.caption_ids]
      assert [c.tolist() for c in src.caption_ids(i)] == [list(c) for c in rec.caption_ids]
      assert src.captions(i) == rec.captions
      # The original JPEG bytes are stored: decoding gives the file's pixels.
      np.testing.assert_array_equal(np.asarray(ex.image),
                                    np.asarray(Image.open(rec.image_path).convert("RGB")))
  assert src.vocab.words == tuple(made["vocab"])


def _birds_config(data_dir, vocab_size, **data):
  c = birds.get_config()
  c.batch_size = 4
  c.text.vocab_size = vocab_size
  c.data.data_dir = str(data_dir)
  c.data.update(data)
  return c


def test_pipeline_over_birds_gives_every_stage(birds_data):
  _, data_dir, made = birds_data
  c = _birds_config(data_dir, len(made["vocab"]))
  source, ds = pipeline.from_config(c)
  classes = [source.class_id(i) for i in range(len(source))]
  for step in range(6):
    b = ds[step]
    assert [x.shape for x in b["images"]] == [(4, 64, 64, 3), (4, 128, 128, 3),
                                              (4, 256, 256, 3)]
    assert all(x.dtype == np.uint8 for x in b["images"])
    assert b["captions"].shape == (4, 18) and (b["caption_lens"] == 10).all()
    for i, j in zip(b["indices"], b["wrong_indices"]):
      assert classes[i] != classes[j]  # never the same bird class
    # The smaller stages are the 256 crop resized.
    big = Image.fromarray(b["images"][2][0])
    np.testing.assert_array_equal(b["images"][0][0],
                                  np.asarray(big.resize((64, 64), Image.BILINEAR)))


def test_eval_pipeline_over_birds_covers_every_caption(birds_data):
  _, data_dir, made = birds_data
  c = _birds_config(data_dir, len(made["vocab"]))
  c.batch_size = 8
  source, ds = pipeline.from_config(c, "test", train=False)
  rows = [(int(i), int(k)) for b in ds for i, k, v in
          zip(b["indices"], b["caption_index"], b["valid"]) if v]
  assert rows == [(i, k) for i in range(2) for k in range(10)]
  assert len(ds) == 3 and ds[2]["valid"].sum() == 4


def test_vocabulary_size_must_match_the_config(birds_data):
  _, data_dir, made = birds_data
  with pytest.raises(VocabularyError, match=rf"vocab_size is 5450 but the birds vocabulary "
                     rf"has {len(made['vocab'])} words"):
    pipeline.from_config(_birds_config(data_dir, 5450))


def test_unprepared_dataset_says_how_to_prepare(tmp_path):
  with pytest.raises(FileNotFoundError, match="mirrorgan_jax.data.prepare --dataset=coco"):
    TfdsSource("coco", "train", str(tmp_path))


def test_coco_prepared_on_first_use_from_manual_dir(tmp_path):
  root, data_dir = tmp_path / "coco", tmp_path / "tfds"
  made = trees.make_coco(root)
  c = coco.get_config()
  c.batch_size = 2
  c.model.num_stages = 2
  c.text.vocab_size = len(made["vocab"])
  c.data.data_dir, c.data.manual_dir = str(data_dir), str(root)
  source, ds = pipeline.from_config(c)
  assert len(source) == 3 and source.captions_per_image == 5
  b = ds[0]
  assert [x.shape for x in b["images"]] == [(2, 64, 64, 3), (2, 128, 128, 3)]
  assert (b["indices"] != b["wrong_indices"]).all()
  grey = TfdsSource("coco", "test", str(data_dir)).example(0)  # written as grey JPEG
  arr = np.asarray(grey.image)
  assert arr.shape[2] == 3 and (arr[..., 0] == arr[..., 1]).all()


def test_broken_tree_is_refused_before_writing(tmp_path):
  root, data_dir = tmp_path / "coco", tmp_path / "tfds"
  made = trees.make_coco(root)
  (root / "images" / f"{made['keys']['train'][0]}.jpg").write_bytes(b"not a jpeg")
  with pytest.raises(DatasetTreeError, match="not a readable image"):
    tfds_builders.prepare("coco", str(root), str(data_dir))
  assert not tfds_builders.builder("coco", str(data_dir)).is_prepared()
