"""Checkpoints of one training phase: Orbax CheckpointManager, asynchronous.

Each checkpoint holds the whole phase state (parameters, EMA, BatchNorm
statistics, optimizer states, step; the run's key), a JSON `meta` item (phase,
stage, iteration, completion, the config) and the data iterator's state.

Retention keeps the newest `keep_latest` checkpoints and the best one by the
phase's metric (lower is better), through a preservation policy: Orbax's
`max_to_keep` + `best_fn` would keep only the best ones and delete the latest
(../shared/specs/stack_notes.md); `best_fn` is set as well, so the metric is
written to disk and ranks checkpoints after a restart. Orbax writes each
checkpoint to a temporary folder and renames it when complete, and removes old
ones only after a newer one is finalised, so a run never loses its last good
checkpoint to a crash.

Restoring tries the newest checkpoint first; a damaged or partial one is
reported with its path and the next older one is used. Its arrays' shapes are
compared with the config's from its metadata first, so that one written with
another model config is named so, with the arrays that differ.
"""

import contextlib
import dataclasses
import json
import logging
import os
import tempfile
import threading
import time
from typing import Any, Callable

from etils import epath
import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

PyTree = Any


class CheckpointError(RuntimeError):
  """No usable checkpoint where one was expected."""


# What the sampling, evaluation and conversion programs report as one message
# with exit status 2: a bad value or path, a checkpoint they cannot restore.
USER_ERRORS = (ValueError, OSError, CheckpointError)


class CheckpointWriteError(CheckpointError):
  """A checkpoint could not be written. Orbax's background threads of the
  failed save may never finish (they wait for signals the failed step never
  sends): a program should end with os._exit after reporting it."""


def check_writable(directory: str) -> None:
  """Creates `directory` and writes and removes a file in it: a read-only or
  full folder is refused before any training, not at the first save."""
  try:
    os.makedirs(directory, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".write_probe_", dir=directory)
    try:
      os.write(fd, b"0")
    finally:
      os.close(fd)
      os.remove(probe)
  except OSError as e:
    raise CheckpointWriteError(
        f"{directory}: cannot write checkpoints here ({e.strerror or e})") from e


@dataclasses.dataclass(frozen=True)
class Restored:
  step: int
  state: PyTree
  meta: dict
  path: str


def _damaged_metrics(directory: str) -> list[str]:
  """The metric files of the checkpoints in `directory` that are not JSON."""
  bad = []
  names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
  for name in (n for n in names if n.isdigit()):
    path = os.path.join(directory, name, "metrics", "metrics")
    if os.path.isfile(path):
      try:
        with open(path, encoding="utf-8") as f:
          json.load(f)
      except ValueError:  # JSONDecodeError and UnicodeDecodeError
        bad.append(path)
  return bad


class _OtherConfig(ValueError):
  """The checkpoint's arrays have other shapes than the config's."""


OTHER_CONFIG = ("written with another model config: its arrays' shapes differ from this "
                "config's (run with the config it was trained with)")


def stored_tree(state_dir: str) -> PyTree | None:
  """The checkpoint's tree of array metadata (no array read), or None."""
  try:
    stored = ocp.StandardCheckpointHandler().metadata(epath.Path(state_dir))
    return getattr(stored, "tree", stored)
  except Exception:  # pylint: disable=broad-except
    return None


def shape_mismatches(stored: PyTree | None, abstract: PyTree) -> list[str]:
  """'name: stored S, this config T' for each array whose shape in `stored`
  (`stored_tree`: the checkpoint's metadata, no array read) differs from
  `abstract`'s, and for arrays only one side has. Checked before restoring:
  Orbax starts reading every array at once and, when one read fails, leaves
  the others pending, whose callbacks then print "Event loop is closed"
  tracebacks at exit."""
  if stored is None:
    return []  # no readable metadata: the restore itself decides (and reports)
  stored = ocp.tree.to_flat_dict(stored)
  wanted = ocp.tree.to_flat_dict(abstract)
  out = []
  # Parameters first: they say which layer differs; their optimizer moments follow.
  for path in sorted(stored.keys() | wanted.keys(),
                     key=lambda p: ("params" not in p, tuple(map(str, p)))):
    name = ".".join(map(str, path))
    if path not in wanted:
      out.append(f"{name}: stored {tuple(stored[path].shape)}, not in this config")
    elif path not in stored:
      out.append(f"{name}: not stored, this config {tuple(wanted[path].shape)}")
    elif jax.dtypes.issubdtype(wanted[path].dtype, jax.dtypes.prng_key):
      continue  # stored as its key data, with another shape
    elif tuple(stored[path].shape) != tuple(wanted[path].shape):
      out.append(f"{name}: stored {tuple(stored[path].shape)}, "
                 f"this config {tuple(wanted[path].shape)}")
  return out


def as_stored(abstract: dict, stored: PyTree | None):
  """(`abstract` as the checkpoint holds it, a function from what restores to
  `abstract`'s types). A dataclass field added to a state after the checkpoint
  was written, whose value holds no array (a network the config does not use,
  as `{}`), is not in the checkpoint: Orbax refuses a tree with it, so it is
  left out of the restore and given back as it is in `abstract`."""
  if not isinstance(stored, dict) or not isinstance(abstract, dict):
    return abstract, lambda out: out
  added = {}
  for item, value in abstract.items():
    if dataclasses.is_dataclass(value) and isinstance(stored.get(item), dict):
      names = [f.name for f in dataclasses.fields(value)
               if f.name not in stored[item] and not jax.tree.leaves(getattr(value, f.name))]
      if names:
        added[item] = (type(value), {n: getattr(value, n) for n in names})
  if not added:
    return abstract, lambda out: out
  shallow = dict(abstract)
  for item, (_, fields) in added.items():
    shallow[item] = {f.name: getattr(abstract[item], f.name)
                     for f in dataclasses.fields(abstract[item]) if f.name not in fields}

  def back(out):
    out = dict(out)
    for item, (cls, fields) in added.items():
      out[item] = cls(**out[item], **fields)
    return out
  return shallow, back


class _Manager(ocp.CheckpointManager):
  """Orbax's manager, opening a folder with an unparsable metric file (as
  "no metric") instead of failing on it; PhaseCheckpoints reports such files."""

  def _get_metrics(self, step: int):
    try:
      return super()._get_metrics(step)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
      return None


# Orbax keys the signals of an asynchronous save by one operation id for the
# whole process: two managers saving at once (phases trained at once, a thread
# each) read each other's id and wait for signals that never come (a failed
# save after 300 s). So one save at a time in a process: a save first waits
# until another manager's last one is done (its errors stay that manager's).
_SAVE_LOCK = threading.Lock()
_last_saver = None  # the PhaseCheckpoints that saved last


class PhaseCheckpoints:
  """The checkpoints of one phase, in `directory`."""

  def __init__(self, directory: str, keep_latest: int = 2, async_save: bool = True,
               writer: bool = True):
    """`writer=False` (generate, evaluate) changes nothing in the folder."""
    self.directory = os.path.abspath(directory)
    # Orbax reads every checkpoint's metric when it opens the folder and fails
    # on one that does not parse: a writer sets such files aside (that
    # checkpoint loses its rank, not its state); a reader leaves them, and
    # "best" names them.
    self.damaged_metrics = _damaged_metrics(self.directory)
    if self.damaged_metrics and writer:
      self._set_aside_metrics()
    policy = checkpoint_managers.AnyPreservationPolicy([
        checkpoint_managers.LatestN(keep_latest),
        checkpoint_managers.BestN(get_metric_fn=lambda m: m["value"], reverse=True, n=1,
                                  keep_checkpoints_without_metrics=False),
    ])
    # best_fn is what makes Orbax write each checkpoint's metric to disk and rank
    # by it (best_step, and BestN after a restart); without it "best" is the newest.
    # Only a writer clears unfinished (tmp) checkpoints when it opens the folder:
    # a reader (generate, evaluate) opening a training run's folder would delete
    # the save in progress, and the run would fail on it.
    self.manager = _Manager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            preservation_policy=policy, enable_async_checkpointing=async_save,
            create=writer, cleanup_tmp_directories=writer,
            best_fn=lambda m: m["value"], best_mode="min"))

  def path(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: PyTree, meta: dict, data_iter=None,
           metric: float | None = None) -> None:
    """Starts an asynchronous save; `metric` (lower is better) ranks it for
    "best". Every process must call this. Orbax reads `state` in the
    background: pass arrays that no later step donates (see trainer.save)."""
    items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(meta)}
    if data_iter is not None:
      # Taken now, as JSON: a handler reading the iterator in the background
      # could see it after the training loop has moved it on.
      items["data_iter"] = ocp.args.JsonSave(data_iter.get_state())
    global _last_saver
    with _SAVE_LOCK:
      other = _last_saver
      if other is not None and other is not self:
        while other.manager.is_saving_in_progress():
          time.sleep(0.01)
      with self._writing():  # also reports a failure of the previous save
        self.manager.save(step, args=ocp.args.Composite(**items),
                          metrics=None if metric is None else {"value": float(metric)},
                          force=True)
      _last_saver = self

  @contextlib.contextmanager
  def _writing(self):
    """Orbax's failures of a (background) save, as one CheckpointWriteError."""
    try:
      yield
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointWriteError(
          f"{self.directory}: a checkpoint could not be written ({type(e).__name__}: {e}); "
          f"the checkpoints already there are kept") from e

  def meta(self, step: int) -> dict:
    return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def restore(self, abstract_for: Callable[[dict], PyTree],
              data_iter=None, step: int | None = None,
              set_aside: bool = True) -> Restored | None:
    """The newest checkpoint that restores, or None when there is none.

    `abstract_for(meta)` gives the state's structure (ShapeDtypeStructs with
    shardings, e.g. for this run's mesh, which may differ from the saving run's).
    With `data_iter`, the iterator's state is set from the checkpoint too.
    With `step`, that checkpoint only: damaged is an error, not a fallback.
    `set_aside=False` leaves damaged ones where they are (readers such as
    generate and evaluate do not rearrange a run's folder)."""
    self.manager.reload()
    failures = []
    for step in ([step] if step is not None else reversed(self.steps())):
      try:
        meta = self.meta(step)
        abstract = abstract_for(meta)
        stored = stored_tree(os.path.join(self.path(step), "state"))  # read once
        differ = shape_mismatches(stored, abstract)
        if differ:
          more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
          raise _OtherConfig("; ".join(differ[:3]) + more)
        abstract, back = as_stored(abstract, stored)
        items = {"state": ocp.args.StandardRestore(abstract),
                 "meta": ocp.args.JsonRestore()}
        # Converted checkpoints (convert/workdirs.py) have no iterator state:
        # training from them starts the data stream afresh.
        has_iter = "converted_from" not in meta
        if data_iter is not None and has_iter:
          items["data_iter"] = ocp.args.JsonRestore()
        out = self.manager.restore(step, args=ocp.args.Composite(**items))
        if data_iter is not None and has_iter:
          data_iter.set_state(out["data_iter"])
      except Exception as e:  # damaged, partial, or from another model
        text = str(e) if len(str(e)) < 600 else str(e)[:600] + " ..."  # Orbax prints whole trees
        if isinstance(e, _OtherConfig):
          msg = f"{self.path(step)}: {OTHER_CONFIG}: {text}"
        else:
          msg = f"{self.path(step)}: damaged or partial checkpoint ({type(e).__name__}: {text})"
        logging.error("%s; trying an older one", msg)
        failures.append(msg)
        continue
      if failures:
        logging.warning("using %s, the newest good checkpoint", self.path(step))
        if set_aside:
          self._set_aside(s for s in self.steps() if s > step)
      return Restored(step, back(out["state"]), dict(out["meta"]), self.path(step))
    if failures:
      raise CheckpointError("no checkpoint could be restored:\n  " + "\n  ".join(failures))
    return None

  def _set_aside(self, steps) -> None:
    """Renames damaged checkpoints to <step>.damaged[.n] (kept for inspection;
    the resumed run writes that step again)."""
    if jax.process_index() == 0:
      for step in steps:
        target, n = f"{self.path(step)}.damaged", 1
        while os.path.exists(target):
          target, n = f"{self.path(step)}.damaged.{n}", n + 1
        os.replace(self.path(step), target)
        logging.warning("moved the damaged checkpoint %s to %s", self.path(step), target)
    multihost_utils.sync_global_devices("mirrorgan_jax: damaged checkpoints set aside")
    self.manager.reload()

  def _set_aside_metrics(self) -> None:
    if jax.process_index() == 0:
      for f in self.damaged_metrics:
        os.replace(f, f + ".damaged")
        logging.warning("%s does not parse: moved to %s.damaged; that checkpoint is "
                        "kept but no longer ranked as best", f, f)
    multihost_utils.sync_global_devices("mirrorgan_jax: damaged metrics set aside")
    self.damaged_metrics = []

  def best_step(self) -> int | None:
    if self.damaged_metrics:
      raise CheckpointError("cannot rank the checkpoints by their metric: not JSON: "
                            + ", ".join(self.damaged_metrics)
                            + " (name a step, or use the newest)")
    return self.manager.best_step()

  def wait(self) -> None:
    with self._writing():
      self.manager.wait_until_finished()

  def close(self) -> None:
    """Waits for the last save, then closes (even when that save failed)."""
    global _last_saver
    try:
      self.wait()
    finally:
      self.manager.close()
      with _SAVE_LOCK:
        if _last_saver is self:
          _last_saver = None
