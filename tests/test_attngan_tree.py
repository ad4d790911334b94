"""Reading and validating CUB and COCO folders in the AttnGAN layout."""

import os
import shutil

import pytest

from mirrorgan_jax.data import safe_pickle
from mirrorgan_jax.data.attngan_tree import DatasetTreeError, read_tree
from mirrorgan_jax.data.vocab import load_captions_pickle, tokenize
from tests import attngan_trees as trees


def test_birds_tree_is_read_in_filenames_order(tmp_path):
  made = trees.make_birds(tmp_path)
  tree = read_tree(tmp_path, "birds")
  assert {s: [r.key for r in recs] for s, recs in tree.splits.items()} == made["keys"]
  assert [r.class_id for r in tree.splits["train"]] == [1, 1, 1, 2, 2]
  assert [r.class_id for r in tree.splits["test"]] == [3, 3]
  # The vocabulary is the pickle's (ids not in first-appearance order).
  assert tree.vocab.words == tuple(made["vocab"]) and tree.vocab_file.endswith("captions.pickle")
  rec = tree.splits["train"][1]
  assert rec.bbox == made["boxes"][rec.key] == (7, 8, 64, 52)  # fractions truncated
  assert len(rec.captions) == 10 and len(rec.caption_ids) == 10
  lines = [x for x in trees.caption_lines(rec.key, 10) if x]
  assert rec.captions == tuple(lines)
  for text, ids in zip(rec.captions, rec.caption_ids):
    assert [tree.vocab.words[i] for i in ids] == tokenize(text)
  assert rec.image_path.endswith(f"CUB_200_2011/images/{rec.key}.jpg")


def test_coco_tree_takes_the_first_five_captions(tmp_path):
  made = trees.make_coco(tmp_path)
  tree = read_tree(tmp_path, "coco")
  assert [len(tree.splits[s]) for s in ("train", "test")] == [3, 2]
  rec = tree.splits["test"][1]
  assert rec.key == made["keys"]["test"][1] and rec.bbox is None
  assert rec.captions == tuple(x for x in trees.caption_lines(rec.key, 6) if x)[:5]
  assert [r.class_id for r in tree.splits["train"]] == [0, 1, 2]  # one class per image


def test_missing_captions_pickle_is_built_and_saved(tmp_path):
  trees.make_coco(tmp_path, with_pickle=False)
  tree = read_tree(tmp_path, "coco")
  saved = load_captions_pickle(tmp_path / "captions.pickle")
  assert saved.vocab == tree.vocab
  assert tree.vocab.words[:6] == ("<end>", "this", "bird", "has", "a", "red")
  assert len(saved.train) == 15 and len(saved.test) == 10
  first = tree.splits["train"][0]
  assert [tree.vocab.words[i] for i in first.caption_ids[0]] == tokenize(first.captions[0])
  # A second read uses the saved pickle: same ids.
  assert read_tree(tmp_path, "coco").splits == tree.splits


def _problems(tmp_path, kind="birds"):
  with pytest.raises(DatasetTreeError) as e:
    read_tree(tmp_path, kind)
  return str(e.value)


def test_every_problem_is_reported_with_its_file(tmp_path):
  made = trees.make_birds(tmp_path)
  k0, k1, k2 = made["keys"]["train"][:3]
  os.remove(tmp_path / "CUB_200_2011" / "images" / f"{k0}.jpg")
  with open(tmp_path / "text" / f"{k1}.txt", "w") as f:
    f.write("one caption\n\nanother\n")
  trees.write_pickle(tmp_path / "test" / "filenames.pickle",
                     made["keys"]["test"] + ["003.Cowbird/Ghost_0099"])
  msg = _problems(tmp_path)
  assert f"CUB_200_2011/images/{k0}.jpg: missing" in msg
  assert f"text/{k1}.txt: 2 non-empty captions, 10 needed" in msg
  assert "003.Cowbird/Ghost_0099.jpg: missing (key '003.Cowbird/Ghost_0099' of test" in msg
  assert "text/003.Cowbird/Ghost_0099.txt: missing" in msg
  assert "no line for key '003.Cowbird/Ghost_0099'" in msg
  assert "captions.pickle: 20 test captions, expected 30" in msg
  assert k2 not in msg


def test_corrupt_jpeg_is_named(tmp_path):
  made = trees.make_coco(tmp_path)
  key = made["keys"]["train"][1]
  path = tmp_path / "images" / f"{key}.jpg"
  path.write_bytes(path.read_bytes()[:200])
  msg = _problems(tmp_path, "coco")
  assert f"images/{key}.jpg: not a readable image" in msg
  # Validation can skip decoding (the file is then rejected at training time).
  assert len(read_tree(tmp_path, "coco", check_images=False).splits["train"]) == 3


def test_bad_metadata_files_are_named(tmp_path):
  trees.make_birds(tmp_path)
  (tmp_path / "train" / "class_info.pickle").write_bytes(b"cos\nsystem\n(S'x'\ntR.")
  with open(tmp_path / "CUB_200_2011" / "bounding_boxes.txt", "a") as f:
    f.write("8 1 2 3\n")
  os.remove(tmp_path / "test" / "filenames.pickle")
  msg = _problems(tmp_path)
  assert "train/class_info.pickle: refused to load: it references os.system" in msg
  assert "bounding_boxes.txt: 8 boxes for 7 images" in msg
  assert "test/filenames.pickle: missing (image keys)" in msg


def test_every_kind_of_problem_is_in_one_report(tmp_path):
  # Images are decoded in the same run as the cheap checks: one report, every problem.
  expected = trees.break_birds(tmp_path, trees.make_birds(tmp_path))
  msg = _problems(tmp_path)
  for line in expected:
    assert line in msg
  assert f": {len(expected)} problem(s) in the dataset folder" in msg
  assert "no line for key" not in msg  # a bad box line is not a missing images.txt line
  assert "PosixPath" not in msg and " object at 0x" not in msg  # paths, not reprs


def test_a_missing_folder_is_one_problem(tmp_path):
  made = trees.make_coco(tmp_path)
  shutil.rmtree(tmp_path / "text")
  (tmp_path / "images" / f"{made['keys']['test'][0]}.jpg").write_bytes(b"")
  msg = _problems(tmp_path, "coco")
  assert ": 2 problem(s)" in msg
  assert "text: missing folder (the captions, <key>.txt)" in msg
  assert f"images/{made['keys']['test'][0]}.jpg: not a readable image (the file is empty)" in msg


def test_a_long_report_counts_the_rest_by_folder(tmp_path):
  made = trees.make_birds(tmp_path)
  ghosts = [f"003.Cowbird/Ghost_{i:04d}" for i in range(30)]
  trees.write_pickle(tmp_path / "test" / "filenames.pickle", made["keys"]["test"] + ghosts)
  trees.write_pickle(tmp_path / "test" / "class_info.pickle", [3] * 32)
  msg = _problems(tmp_path)
  # Each ghost: its image, its caption file, its images.txt line; and the pickle's count.
  assert ": 91 problem(s)" in msg
  assert ("\n  ... and 66 more: 22 in CUB_200_2011/images.txt, 22 in text/, "
          "21 in CUB_200_2011/images/, 1 in captions.pickle") in msg
  assert len(msg.splitlines()) == 1 + 25 + 1


def test_class_ids_must_match_keys(tmp_path):
  trees.make_birds(tmp_path)
  trees.write_pickle(tmp_path / "train" / "class_info.pickle", [1, 2])
  assert "train/class_info.pickle: 2 class ids for 5 keys" in _problems(tmp_path)


def test_empty_or_absent_folder(tmp_path):
  with pytest.raises(DatasetTreeError, match="the folder is empty"):
    read_tree(tmp_path, "coco")
  with pytest.raises(DatasetTreeError, match="nothing: no such folder"):
    read_tree(tmp_path / "nothing", "coco")
  (tmp_path / "a_file").write_text("x")
  with pytest.raises(DatasetTreeError, match="a_file: not a folder"):
    read_tree(tmp_path / "a_file", "coco")
  with pytest.raises(ValueError, match="unknown dataset kind 'flowers'"):
    read_tree(tmp_path, "flowers")


def test_nothing_is_written_when_the_tree_is_broken(tmp_path):
  made = trees.make_coco(tmp_path, with_pickle=False)
  os.remove(tmp_path / "text" / f"{made['keys']['test'][0]}.txt")
  _problems(tmp_path, "coco")
  assert not (tmp_path / "captions.pickle").exists()
  assert safe_pickle.load(tmp_path / "train" / "filenames.pickle") == made["keys"]["train"]
