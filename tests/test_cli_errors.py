"""A user's mistake in a command (a flag, a config field, a config file, a
workdir, a dataset folder) is one message naming it on stderr, exit status 2,
no traceback, and nothing left behind. The commands run as a user runs them:
as subprocesses of train.py and python -m mirrorgan_jax.data.prepare."""

import os
import subprocess
import sys

import pytest

from mirrorgan_jax.data import tfds_builders
from tests import attngan_trees as trees

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


def _run(*args, timeout=120):
  return subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True,
                        text=True, timeout=timeout)


def _usage_error(r, *names):
  """Exit status 2, no traceback, and each of `names` in the message."""
  assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
  assert "Traceback" not in r.stderr, r.stderr[-3000:]
  assert "error: " in r.stderr
  for name in names:
    assert name in r.stderr, r.stderr
  return r.stderr


def _train(tmp_path, *args):
  workdir = tmp_path / "run"
  r = _run("train.py", "--workdir", str(workdir), *args)
  assert not workdir.exists()  # refused before anything is written
  return r


def test_misspelled_field_names_the_field_and_the_close_one(tmp_path):
  # No --config: ml_collections applies overrides while the flag is defined.
  err = _usage_error(_train(tmp_path, "--config.optim.glr=1e-4"), "--config.optim.glr",
                     "configs/shapes.py", "did you mean --config.optim.g_lr?")
  assert len(err.strip().splitlines()) == 1


def test_misspelled_group_after_a_config_file(tmp_path):
  _usage_error(_train(tmp_path, "--config", "configs/tiny.py", "--config.optimm.g_lr=1e-4"),
               "--config.optimm does not exist in configs/tiny.py; did you mean --config.optim?")


def test_missing_config_file(tmp_path):
  _usage_error(_train(tmp_path, "--config", "configs/tinyy.py"),
               "--config configs/tinyy.py: no such file", "did you mean configs/tiny.py?")


def test_malformed_override_value(tmp_path):
  _usage_error(_train(tmp_path, "--config.batch_size=abc"),
               "--config.batch_size=abc: expected an integer, like the config's 32")


def test_config_value_out_of_range_is_refused_before_jax_starts(tmp_path):
  # config.train.distributed was read by the multi-process start-up before any check.
  _usage_error(_train(tmp_path, "--config.train.distributed=maybe"),
               "config.train.distributed must be 'auto', 'yes' or 'no', got 'maybe'")


def test_workdir_that_is_a_file_is_left_as_it_is(tmp_path):
  path = tmp_path / "notes.txt"
  path.write_text("keep me")
  _usage_error(_run("train.py", "--workdir", str(path)),
               f"--workdir {path}: is a file, not a folder")
  assert path.read_text() == "keep me"


def test_flag_mistakes(tmp_path):
  _usage_error(_run("train.py", "--config.batch_size=4"), "--workdir is required")
  _usage_error(_run("train.py", "--workdri", str(tmp_path)),
               "Unknown command line flag 'workdri'. Did you mean: workdir ?")
  # A config file given without --config would otherwise be ignored (and the
  # default trained); the field after it fails the old code fast.
  _usage_error(_train(tmp_path, "configs/tiny.py", "--config.dataset=nope"),
               "unexpected argument(s) configs/tiny.py")


def test_broken_dataset_for_training_is_one_report(tmp_path):
  root, data_dir = tmp_path / "birds", tmp_path / "tfds"
  expected = trees.break_birds(root, trees.make_birds(root))
  r = _run("train.py", "--config", "configs/tiny.py", "--workdir", str(tmp_path / "run"),
           "--config.dataset=birds", "--config.damsm.near_misses=False",
           f"--config.data.manual_dir={root}", f"--config.data.data_dir={data_dir}")
  _usage_error(r, f"error: {root}: {len(expected)} problem(s) in the dataset folder", *expected)
  assert not data_dir.exists()
  assert not (tmp_path / "run").exists()  # nor the workdir this run would have created


def _prepare(*args):
  return _run("-m", "mirrorgan_jax.data.prepare", *args)


def test_prepare_lists_every_problem_and_leaves_no_folder(tmp_path):
  root, existing = tmp_path / "birds", tmp_path / "existing"
  expected = trees.break_birds(root, trees.make_birds(root, with_pickle=False))
  existing.mkdir()
  data_dir = existing / "a" / "b"
  err = _usage_error(_prepare("--dataset=birds", f"--manual_dir={root}",
                              f"--data_dir={data_dir}"),
                     f"{root}: {len(expected)} problem(s) in the dataset folder", *expected)
  assert "PosixPath" not in err and " object at 0x" not in err
  assert len(err.strip().splitlines()) == 1 + len(expected)  # the report only
  assert os.listdir(existing) == []  # the folders it would have written to are gone
  assert not (root / "captions.pickle").exists()  # nor is the vocabulary written


def test_prepare_flag_and_folder_mistakes(tmp_path):
  data_dir = tmp_path / "tfds"
  _usage_error(_prepare(f"--manual_dir={tmp_path}"), "--dataset is required")
  _usage_error(_prepare("--dataset=coco", f"--manual_dir={tmp_path / 'nothing'}",
                        f"--data_dir={data_dir}"),
               f"{tmp_path / 'nothing'}: no such folder (expected the coco dataset")
  assert not data_dir.exists()


def test_interrupted_write_leaves_no_folder(tmp_path, monkeypatch):
  root, data_dir = tmp_path / "coco", tmp_path / "out" / "tfds"
  trees.make_coco(root)

  def failing(self, records):
    yield 0, next(iter(super(type(self), self)._generate_examples(records)))[1]
    raise KeyboardInterrupt

  monkeypatch.setattr(tfds_builders.AttnganCoco, "_generate_examples", failing)
  with pytest.raises(KeyboardInterrupt):
    tfds_builders.prepare("coco", root, data_dir)
  assert not (tmp_path / "out").exists()


def test_convert_config_mistakes_are_messages(tmp_path):
  """The converter parses its --config like train.py does."""
  out = tmp_path / "out.npz"
  _usage_error(_run("-m", "mirrorgan_jax.convert", "resnet152", str(tmp_path / "r.pth"),
                    "--out", str(out), "--config.stream.resnet_weigths=x"),
               "--config.stream.resnet_weigths", "--config.stream.resnet_weights")
  _usage_error(_run("-m", "mirrorgan_jax.convert", "resnet152", str(tmp_path / "r.pth"),
                    "--out", str(out), "--config", "configs/bird.py"), "configs/bird.py")
  assert not out.exists()
