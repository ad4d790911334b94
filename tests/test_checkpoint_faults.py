"""Checkpoints that cannot be written: the run ends at once with one message
naming the folder and a non-zero status, never hangs, and keeps the
checkpoints already written."""

import errno
import os
import subprocess
import sys

from mirrorgan_jax.checkpointing import PhaseCheckpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
TRAIN = ["--config", os.path.join(ROOT, "configs", "tiny.py"), "--config.train.phases=damsm"]


def _make_unwritable(folder) -> None:
  """A folder the run cannot write into: read-only for a normal user; for
  root, who writes through permissions, a link into sysfs (no one creates
  files there)."""
  if os.geteuid() != 0:
    os.makedirs(folder)
    os.chmod(folder, 0o555)
  else:
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    os.symlink("/sys/kernel", folder)


def test_an_unwritable_checkpoint_folder_is_refused_before_any_work(tmp_path):
  workdir = tmp_path / "w"
  _make_unwritable(str(workdir / "checkpoints" / "damsm"))
  out = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *TRAIN,
                        "--workdir", str(workdir)], cwd=ROOT, env=ENV, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 1, out.stdout + out.stderr
  assert "Traceback" not in out.stderr, out.stderr
  assert out.stderr.strip().splitlines()[-1].startswith(
      f"error: {workdir / 'checkpoints' / 'damsm'}: cannot write checkpoints here"), out.stderr
  assert not (workdir / "metrics.jsonl").exists()  # no iteration was trained


# Runs train.py with the file system refusing to create checkpoint 2's
# folder (of the phase named by FAIL_PHASE, else of any), as a folder turned
# read-only (or a full disk) mid-run does. Before, the run printed Orbax's
# traceback and then never exited.
_FAILING_SAVE = """
import errno, os, runpy, sys
_makedirs = os.makedirs
def makedirs(name, *args, **kwargs):
  path, phase = os.fspath(name), os.environ.get("FAIL_PHASE")
  if (os.path.basename(path) == "2.orbax-checkpoint-tmp"
      and phase in (None, os.path.basename(os.path.dirname(path)))):
    raise PermissionError(errno.EACCES, "Permission denied", os.fspath(name))
  return _makedirs(name, *args, **kwargs)
os.makedirs = makedirs
sys.argv = ["train.py"] + sys.argv[1:]
runpy.run_module("mirrorgan_jax.train_main", run_name="__main__", alter_sys=True)
"""


def test_a_failed_background_save_ends_the_run_and_keeps_the_good_checkpoint(tmp_path):
  workdir = tmp_path / "w"
  out = subprocess.run([sys.executable, "-c", _FAILING_SAVE, *TRAIN, "--workdir", str(workdir),
                        "--config.damsm.num_steps=4", "--config.train.checkpoint_every=1"],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
  assert out.returncode == 1, out.stdout + out.stderr
  folder = workdir / "checkpoints" / "damsm"
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith(f"error: {folder}: a checkpoint could not be written "
                         f"(PermissionError: [Errno {errno.EACCES}]"), out.stderr
  assert "2.orbax-checkpoint-tmp" in last
  ckpt = PhaseCheckpoints(str(folder))
  try:
    assert ckpt.steps() == [1]  # the good checkpoint, and nothing half-written as a step
    assert ckpt.meta(1)["iteration"] == 1
  finally:
    ckpt.close()


def test_a_failed_save_of_a_phase_trained_at_once_ends_the_run_and_the_other_keeps_its_own(tmp_path):
  """damsm's save fails while stream trains beside it: stream saves where it
  is and stops, and the run ends with damsm's message, without hanging."""
  workdir = tmp_path / "w"
  out = subprocess.run([sys.executable, "-c", _FAILING_SAVE, *TRAIN, "--workdir", str(workdir),
                        "--config.train.phases=damsm,stream",
                        "--config.train.concurrent_pretraining=True",
                        "--config.damsm.num_steps=4", "--config.stream.num_steps=5000",
                        "--config.train.checkpoint_every=1"],
                       cwd=ROOT, env={**ENV, "FAIL_PHASE": "damsm"}, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 1, out.stdout + out.stderr
  folder = workdir / "checkpoints" / "damsm"
  assert out.stderr.strip().splitlines()[-1].startswith(
      f"error: {folder}: a checkpoint could not be written "
      f"(PermissionError: [Errno {errno.EACCES}]"), out.stderr
  assert "(the damsm phase failed); checkpoint" in out.stderr
  stream = PhaseCheckpoints(str(workdir / "checkpoints" / "stream"))
  try:
    step = stream.steps()[-1]
    assert 1 <= step < 5_000 and not stream.meta(step)["complete"]
  finally:
    stream.close()
