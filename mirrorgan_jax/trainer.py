"""The training program: the phases damsm -> stream -> gan in one run, each
resumable to the bit from its checkpoints.

A phase is a list of segments (one, or one per stage of a growth schedule).
Each iteration: next batch -> jitted step with the state donated -> a guard
that keeps the previous state when any metric is not finite -> logging,
evaluation, samples and checkpoints at the config's intervals. A phase whose
newest checkpoint is marked complete is skipped; SIGTERM and SIGINT save a
checkpoint and end the run cleanly.
"""

import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import logging
import os
import shutil
import signal
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mirrorgan_jax import factory, gan_state, host_memory, param_groups, parallel
from mirrorgan_jax import pretrain_steps, summaries, trained
from mirrorgan_jax.checkpointing import CheckpointError, PhaseCheckpoints, check_writable
from mirrorgan_jax.config_check import ConfigError, sentence_code
from mirrorgan_jax.guarded_step import gan_train_step, guard_nonfinite
from mirrorgan_jax.convert import backbones
from mirrorgan_jax.data import pipeline, shapes_scorer
from mirrorgan_jax.sampling import batched, example_keys, local_replica, make_sampler
from mirrorgan_jax.sampling import make_ema_stats, sampling_noise, sampling_params

PHASES = ("damsm", "stream", "gan")
SAMPLE_CAPTIONS = 8  # rows of the sample grid
ALIGNMENT_CAPTIONS = 256  # shapes test captions scored for the "best" checkpoint


class TrainingStopped(RuntimeError):
  """A non-finite loss under nan_policy 'stop'."""


class Preempted(Exception):
  """The run was asked to stop (signal or `stop_after`); a checkpoint was saved."""


def parse_phases(text: str) -> tuple[str, ...]:
  names = tuple(p.strip() for p in text.split(",") if p.strip())
  unknown = [p for p in names if p not in PHASES]
  if unknown or not names:
    raise ConfigError(f"config.train.phases={text!r}: use a subset of {','.join(PHASES)}")
  return tuple(p for p in PHASES if p in names)


def stage_schedule(config) -> list[tuple[int, int]]:
  """[(first iteration, number of stages), ...]; () means all stages from 0."""
  n = config.model.num_stages
  if not config.gan.stages:
    return [(0, n)]
  sched = [(int(s), int(k)) for s, k in config.gan.stages]
  if sched[0][0] != 0 or sched[-1][1] != n or any(
      b[0] <= a[0] or b[1] <= a[1] for a, b in zip(sched, sched[1:])) or sched[0][1] < 1:
    raise ConfigError(f"config.gan.stages={config.gan.stages!r}: steps must start at 0 and "
                     f"grow, stage counts grow and end at model.num_stages={n}")
  return sched


def phase_config(config, phase: str):
  """The config a phase's pipeline and networks see (its own batch size)."""
  c = ml_collections.ConfigDict(config.to_dict())
  c.batch_size = {"damsm": config.damsm.batch_size, "stream": config.stream.batch_size,
                  "gan": config.batch_size}[phase]
  c.data.near_misses = phase == "damsm" and config.damsm.get("near_misses", False)
  c.data.colour_twins = phase == "gan" and config.loss.get("colour_twin_weight", 0.0) > 0
  return c


def num_steps(config, phase: str) -> int:
  return {"damsm": config.damsm.num_steps, "stream": config.stream.num_steps,
          "gan": config.gan.num_steps}[phase]


@dataclasses.dataclass
class Segment:
  """Iterations [start, next segment's start) of a phase, with one state structure."""
  start: int
  stages: int
  init: Callable  # key -> state
  step: Callable  # (state, batch, key) -> (state, metrics), jitted
  grow: Callable | None = None  # previous segment's state -> this one's
  evaluate: Callable | None = None  # state -> metric, lower is better
  samples: Callable | None = None  # (state, iteration, RunLog) -> None
  report: Callable | None = None  # (state, iteration, RunLog) -> None, at the phase's end
  # state -> state, before a checkpoint, samples or the report read it
  # (gan.ema_bn_batches: the EMA generator's own BatchNorm statistics)
  refresh: Callable | None = None


class _StopFlag:
  """SIGTERM and SIGINT ask the loop to save and stop."""

  def __init__(self):
    self.reason = None

  @contextlib.contextmanager
  def installed(self):
    previous = {}

    def handler(signum, frame):
      del frame
      self.reason = signal.Signals(signum).name

    try:
      for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: no handlers
      pass
    try:
      yield self
    finally:
      for sig, h in previous.items():
        signal.signal(sig, h)


@dataclasses.dataclass
class Run:
  config: ml_collections.ConfigDict
  workdir: str
  mesh: jax.sharding.Mesh
  stop: _StopFlag
  stop_after: int | None = None  # iterations of this invocation, then as if preempted
  iterations: int = 0
  is_main: bool = True

  def checkpoints(self, phase: str) -> PhaseCheckpoints:
    return PhaseCheckpoints(os.path.join(self.workdir, "checkpoints", phase),
                            self.config.train.keep_latest)


def _host(tree):
  return jax.device_get(tree)


_COMPILED: dict = {}


def _compiled(run: "Run", name: str, config, make: Callable[[ml_collections.ConfigDict],
                                                              Callable]) -> Callable:
  """`make(factory.program_config(config))`, once per (name, that config,
  devices) in this process: a resumed or repeated run in the same process
  reuses compiled programs."""
  pc = factory.program_config(config)
  key = (name, pc.to_json_best_effort(), tuple(d.id for d in run.mesh.devices.flat))
  if key not in _COMPILED:
    _COMPILED[key] = make(pc)
  return _COMPILED[key]


RUN_ONCE = ("_init", "gan_grow")  # names of programs a phase runs once


def _release_run_once(state, phase: str) -> None:
  """Drops the executables of the programs `phase` runs once (its init, a
  growth), once `state`, which they made, is ready: otherwise they stay
  resident beside the step for the rest of the process (birds: the gan init
  holds 197 MiB). Called after the step's compile, which thus overlaps the
  init's run. Only this phase's: another may be running at once. A later run
  in this process traces and compiles them again, from the persistent
  compilation cache where that is on."""
  jax.block_until_ready(state)
  for (name, *_), program in list(_COMPILED.items()):
    if (name.startswith(phase + "_") and any(part in name for part in RUN_ONCE)
        and hasattr(program, "clear_cache")):
      program.clear_cache()
  host_memory.release()


@functools.lru_cache(maxsize=None)
def _copier(mesh):
  return jax.jit(lambda t: jax.tree.map(jnp.copy, t), out_shardings=parallel.replicated(mesh))


def _replicated_copy(mesh, tree):
  """Fresh replicated buffers: a state that is donated to the step must not
  share arrays with anything kept elsewhere."""
  return _copier(mesh)(tree)


def _abstract_key(key, mesh):
  return jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=parallel.replicated(mesh))


def _metrics_line(metrics: dict) -> dict:
  return {k: float(v) for k, v in metrics.items() if k != "finite"}


def run_phase(run: Run, phase: str, segments: list[Segment], *, train_data,
              key) -> tuple:
  """Trains `phase` to its step count (or resumes it); returns the final state."""
  config, mesh = run.config, run.mesh
  total = num_steps(config, phase)
  ckpt = run.checkpoints(phase)
  seg_of = lambda i: [s for s in segments if s.start <= i][-1]  # noqa: E731
  by_stages = {s.stages: s for s in segments}
  data_iter = pipeline.iterator(train_data, config.data.workers, config.data.prefetch)

  def abstract_for(meta):
    seg = by_stages.get(meta.get("stages", segments[0].stages))
    if seg is None:
      raise CheckpointError(f"checkpoint of {meta.get('stages')} stages does not fit "
                            f"config.gan.stages")
    return {"state": trained.abstract_state(seg.init, key, mesh), "key": _abstract_key(key, mesh)}

  restored = ckpt.restore(abstract_for, data_iter)
  if restored is not None and phase in TEXT_PHASES:
    try:
      _check_sentence_code(restored.meta, config, restored.path)
    except ConfigError:
      ckpt.close()
      raise
  if restored is not None and restored.meta.get("untrained_stream"):
    ckpt.close()
    raise CheckpointError(
        f"{restored.path}: converted without STREAM weights (it can sample, not train): "
        f"convert your CAPTION_CNN/CAPTION_RNN into {run.workdir} (python -m "
        f"mirrorgan_jax.convert stream ...) and convert the generator again")
  if restored is not None and restored.meta.get("complete") and restored.meta["iteration"] < total:
    # The phase was asked for more iterations than it finished with: go on.
    logging.warning("%s: complete at iteration %d; continuing to %d", phase,
                    restored.meta["iteration"], total)
    restored = dataclasses.replace(restored, meta={**restored.meta, "complete": False})
  if restored is not None and restored.meta.get("complete"):
    logging.warning("%s: complete at %s, skipped", phase, restored.path)
    ckpt.close()
    if hasattr(data_iter, "close"):
      data_iter.close()
    return restored.state["state"]
  if restored is not None:
    iteration, state = restored.meta["iteration"], restored.state["state"]
    seg = by_stages[restored.meta["stages"]]
    logging.warning("%s: resuming from %s (iteration %d)", phase, restored.path, iteration)
  else:
    iteration, seg = 0, segments[0]
    state = seg.init(key)
  last_good = restored.path if restored else None

  def save(iteration, complete=False, metrics=None):
    nonlocal last_good
    metric = seg.evaluate(state) if seg.evaluate is not None else None
    metric = metric if metric is not None and np.isfinite(metric) else None
    meta = {"phase": phase, "iteration": iteration, "stages": seg.stages,
            "complete": complete, "metric": metric, "metrics": metrics or {},
            "config": json.loads(config.to_json_best_effort())}
    # A copy: the next step donates `state` while Orbax may still be reading it.
    ckpt.save(iteration, _replicated_copy(mesh, {"state": state, "key": key}), meta,
              data_iter, metric)
    last_good = ckpt.path(iteration)
    return metric

  tc = config.train
  log = summaries.RunLog(run.workdir, phase, run.is_main)
  bar = summaries.Progress(total, iteration, phase, run.is_main)
  last_metrics = dict(restored.meta.get("metrics", {})) if restored else {}
  skipped, t0, n0 = int(last_metrics.get("skipped", 0)), time.perf_counter(), iteration
  pending = None  # (iteration, metrics) whose finiteness is not read yet
  warmed = set()  # ids of the segments whose step is compiled

  def check_pending():
    """Reads whether the pending iteration was finite: a host sync, so it is
    done once the next step is queued (the host then fetches the following
    batch while the device computes) and before anything that reads the
    state. The step's guard already kept the state of a non-finite one."""
    nonlocal pending, skipped
    if pending is None:
      return
    (bad_iteration, m), pending = pending, None
    if bool(m["finite"]):
      return
    terms = {k: float(v) for k, v in _host(m).items() if k != "finite"}
    what = "loss" if not all(np.isfinite(v) for v in terms.values()) else "update"
    if tc.nan_policy == "stop":
      raise TrainingStopped(
          f"{phase}: non-finite {what} at iteration {bad_iteration}; the update was not "
          f"applied. Terms: {terms}. Last good checkpoint: {last_good or 'none'}")
    skipped += 1
    logging.warning("%s: non-finite %s at iteration %d skipped: %s", phase, what,
                    bad_iteration, terms)

  try:
    while iteration < total:
      if run.stop.reason or (run.stop_after is not None and run.iterations >= run.stop_after):
        check_pending()
        if last_good != ckpt.path(iteration):  # not saved at this iteration already
          if seg.refresh is not None:
            state = seg.refresh(state)
          save(iteration, metrics=last_metrics)
        ckpt.wait()
        raise Preempted(f"{phase}: stopped at iteration {iteration} "
                        f"({run.stop.reason or 'stop_after'}); checkpoint "
                        f"{ckpt.path(iteration)}; run the same command to resume")
      nxt = seg_of(iteration)
      if nxt is not seg:
        state, seg = nxt.grow(state), nxt
        logging.warning("%s: grew to %d stages at iteration %d", phase, seg.stages, iteration)
      batch = pipeline.device_batch(mesh, next(data_iter))
      if id(seg) not in warmed:  # compiled before it runs, the compiler's garbage released
        host_memory.compile_and_release(seg.step, state, batch, key)
        warmed.add(id(seg))
        _release_run_once(state, phase)  # the init or growth that made `state` has run
      state, metrics = seg.step(state, batch, key)
      iteration += 1
      run.iterations += 1
      check_pending()  # the previous iteration's; this one is queued behind it
      pending = (iteration, metrics)
      due = lambda every: every > 0 and iteration % every == 0  # noqa: E731
      sample_now = seg.samples is not None and (due(tc.sample_every) or iteration == total)
      if due(tc.log_every) or sample_now or due(tc.checkpoint_every) or iteration == total:
        check_pending()
      if seg.refresh is not None and (sample_now or due(tc.checkpoint_every)
                                      or iteration == total):
        state = seg.refresh(state)
      if due(tc.log_every) or iteration == total:
        last_metrics = _metrics_line(_host(metrics))
        now = time.perf_counter()
        last_metrics["iterations_per_s"] = (iteration - n0) / max(now - t0, 1e-9)
        last_metrics["skipped"] = skipped
        t0, n0 = now, iteration
        log.scalars(iteration, last_metrics)
        bar.update(iteration, last_metrics)
      if sample_now:
        seg.samples(state, iteration, log)
      if iteration == total:
        if seg.report is not None:
          seg.report(state, iteration, log)
        metric = save(iteration, complete=True, metrics=last_metrics)
      elif due(tc.checkpoint_every):
        metric = save(iteration, metrics=last_metrics)
      else:
        continue
      if metric is not None:
        log.scalars(iteration, {"eval/metric": metric})
    ckpt.wait()
    return state
  finally:
    bar.close()
    log.close()
    ckpt.close()
    if hasattr(data_iter, "close"):
      data_iter.close()


def _eval_batches(config, phase: str, mesh, n: int):
  """The first `n` batches of the test split, on the devices."""
  pc = phase_config(config, phase)
  _, ds = pipeline.from_config(pc, "test", train=False)
  return [pipeline.device_batch(mesh, ds[i]) for i in range(min(n, len(ds)))]


def _mean_eval(evaluate, name: str, state, batches) -> float:
  return float(np.mean([float(evaluate(state, b)[name]) for b in batches]))


# phase -> (init_state, make_step, make_eval, the eval metric's name)
_PRETRAIN = {
    "damsm": (pretrain_steps.init_damsm_state, pretrain_steps.make_damsm_step,
              pretrain_steps.make_damsm_eval, "damsm_loss"),
    "stream": (pretrain_steps.init_stream_state, pretrain_steps.make_stream_step,
               pretrain_steps.make_stream_eval, "stream_loss"),
}


def pretrain_init(run: Run, models, phase: str, backbone: bool = True) -> Callable:
  """The jitted `key -> state` of a pretraining phase; with `backbone`, the
  configured ImageNet weights are put in (not needed for shapes alone)."""
  pc = phase_config(run.config, phase)
  init_state = _PRETRAIN[phase][0]
  weights = backbones.weights_file(run.config, phase) if backbone else None
  init = _compiled(run, f"{phase}_init" + ("_backbone" if weights else ""), pc,
                   lambda c: backbones.jit_init(lambda k: init_state(models, c, k), phase,
                                                run.mesh, with_weights=bool(weights)))
  return backbones.with_weights(init, weights, run.mesh) if weights else init


def pretrain_segments(run: Run, models, phase: str) -> list[Segment]:
  pc = phase_config(run.config, phase)
  _, make_step, make_eval, metric = _PRETRAIN[phase]
  step = _compiled(run, f"{phase}_step", pc, lambda c: parallel.jit_train_step(
      guard_nonfinite(make_step(models, c)), run.mesh))
  evaluate = _compiled(run, f"{phase}_eval", pc, lambda c: jax.jit(make_eval(models, c)))
  batches = _eval_batches(run.config, phase, run.mesh, run.config.train.eval_batches)
  return [Segment(0, 0, pretrain_init(run, models, phase), step,
                  evaluate=lambda s: _mean_eval(evaluate, metric, s, batches))]


def _grow(fresh: gan_state.GANState, old: gan_state.GANState) -> gan_state.GANState:
  """`fresh` (a larger model) with everything `old` trained grafted in; an
  edge critic (`loss.edge_d_weight`) starts afresh at the new last scale."""
  g = gan_state.NetState(*(param_groups.graft(getattr(fresh.g, f), getattr(old.g, f))
                           for f in ("params", "batch_stats", "opt_state")))
  return fresh.replace(step=old.step, g=g, g_ema=param_groups.graft(fresh.g_ema, old.g_ema),
                       d=tuple(old.d) + tuple(fresh.d[len(old.d):]),
                       text_encoder=old.text_encoder, stream=old.stream,
                       image_encoder=old.image_encoder)


def gan_segments(run: Run, pretrained, source_vocab) -> list[Segment]:
  """pretrained: (text encoder params, STREAM variables, DAMSM image encoder
  variables or {}), as `gan_state.init_gan_state` takes them."""
  config, mesh = run.config, run.mesh
  rows = np.shape(pretrained[0]["embedding"]["embedding"])[0]
  source_vocab.check_size(rows, "the DAMSM text encoder")
  pretrained = _replicated_copy(mesh, pretrained)
  local_mesh = parallel.make_mesh(jax.local_devices())  # sampling: see _generate
  test = _gan_eval_captions(config, local_mesh)
  metric = config.eval.train_metric
  if metric == "auto":
    metric = "alignment" if config.dataset == "shapes" else "fid"
  fid_metric = None
  if metric == "fid":
    from mirrorgan_jax import evaluate  # pylint: disable=import-outside-toplevel
    fid_metric = evaluate.TrainingFid(config, run.workdir, run.is_main)
  stats_captions = _ema_stats_captions(config, mesh) if gan_state.uses_ema_stats(config) else None
  segments = []
  for start, n in stage_schedule(config):
    cn = ml_collections.ConfigDict(config.to_dict())
    cn.model.num_stages = n
    models = factory.create_models(cn)
    raw_init = _compiled(run, f"gan_init_{n}", cn, lambda c, m=models: jax.jit(
        lambda k, pretrained: gan_state.init_gan_state(m, c, k, pretrained),
        out_shardings=parallel.replicated(mesh)))

    def init(key, raw_init=raw_init):
      return raw_init(key, _replicated_copy(mesh, pretrained))

    def grow(old, init=init, n=n):
      return _compiled(run, "gan_grow", config, lambda _: jax.jit(
          _grow, out_shardings=parallel.replicated(mesh)))(
          init(jax.random.fold_in(jax.random.key(config.seed), 1000 + n)), old)

    sampler = _compiled(run, f"gan_sampler_{n}", cn, lambda c, m=models: jax.jit(
        make_sampler(m, c)))
    step = _compiled(run, f"gan_step_{n}", cn, lambda c, m=models: parallel.jit_train_step(
        gan_train_step(m, c), mesh))
    refresh = None
    if stats_captions is not None:
      ema_stats = _compiled(run, f"gan_ema_stats_{n}", cn, lambda c, m=models: jax.jit(
          make_ema_stats(m, c), out_shardings=parallel.replicated(mesh)))

      def refresh(s, ema_stats=ema_stats):
        return s.replace(g_ema_stats=ema_stats(s, *stats_captions))
    segments.append(Segment(
        start, n, init, step, grow=grow if segments else None,
        evaluate={"alignment": lambda s, sampler=sampler: _alignment_metric(s, sampler, test),
                  "fid": lambda s, sampler=sampler: fid_metric(sampler, sampling_params(s)),
                  "none": None}[metric],
        samples=lambda s, it, log, sampler=sampler: _log_samples(
            s, it, log, sampler, test, source_vocab, run.workdir),
        report=(lambda s, it, log, sampler=sampler: _alignment_report(
            s, it, log, sampler, config, local_mesh)) if config.dataset == "shapes" else None,
        refresh=refresh))
  return segments


def _ema_stats_captions(config, mesh):
  """(captions (K, B, T), lengths (K, B), the run's seed), replicated on
  `mesh`: what `sampling.make_ema_stats` draws the EMA generator's BatchNorm
  statistics with, K = gan.ema_bn_batches batches of the training batch size
  of fixed training captions, each of its own image."""
  from mirrorgan_jax import evaluate  # pylint: disable=import-outside-toplevel
  pc = phase_config(config, "gan")
  source, _ = pipeline.from_config(pc, "train", train=False, process_index=0, process_count=1)
  k, b = pc.gan.ema_bn_batches, pc.batch_size
  caps = evaluate.drawn_captions(source, k * b, config.seed, pc.text.words_num)
  return _replicated_copy(mesh, (caps.ids.reshape(k, b, -1), caps.lens.reshape(k, b),
                                 np.int32(config.seed)))


def _gan_eval_captions(config, mesh, split: str = "test", count: int = ALIGNMENT_CAPTIONS,
                       paraphrased: bool = False):
  """Captions of `split` (ids, lengths, texts) for scoring and sample grids:
  the same on every process (each samples them all, see _generate).
  `paraphrased` (shapes): the same scenes in the paraphrase templates."""
  pc = phase_config(config, "gan")
  source, ds = pipeline.from_config(pc, split, train=False, process_index=0, process_count=1)
  common = {"batch": pc.batch_size, "mesh": mesh, "vocab": source.vocab,
            "per_image": source.captions_per_image}
  if paraphrased:
    from mirrorgan_jax import evaluate  # pylint: disable=import-outside-toplevel
    caps = evaluate.first_captions(source, count, pc.text.words_num, paraphrased=True)
    return {"ids": caps.ids, "lens": caps.lens, "texts": caps.texts, **common}
  n = min(count, len(source) * source.captions_per_image)
  ids, lens, texts = [], [], []
  for b in range(-(-n // pc.batch_size)):
    batch = ds[b]
    for row in range(len(batch["captions"])):
      if len(ids) < n and batch["valid"][row]:
        ids.append(batch["captions"][row])
        lens.append(batch["caption_lens"][row])
        texts.append(source.captions(int(batch["indices"][row]))[
            int(batch["caption_index"][row])])
  return {"ids": np.stack(ids), "lens": np.asarray(lens, np.int32), "texts": texts, **common}


def _generate(state, sampler, test, indices):
  """EMA images for the test captions at `indices`, fixed seed, in batches.
  Each process samples them all on its own devices (`test["mesh"]`) from its
  replica of the state, so every process holds the whole result as numpy."""
  indices = np.asarray(indices)
  mesh = test["mesh"]
  chunks = list(batched(sampler, local_replica(sampling_params(state), mesh), mesh,
                        test["batch"], test["ids"][indices], test["lens"][indices],
                        example_keys(jax.random.key(0), indices)))
  images, attention = zip(*chunks)
  return ([np.concatenate(s) for s in zip(*images)],
          [np.concatenate(a) for a in zip(*attention)])


def alignment_scores(state, sampler, test) -> dict:
  """The shapes scorer on EMA images for every caption of `test`."""
  images, _ = _generate(state, sampler, test, range(len(test["ids"])))
  return shapes_scorer.score(summaries.to_uint8(images[-1]), test["texts"])


def _alignment_metric(state, sampler, test) -> float:
  """1 - mean per-attribute accuracy of the shapes scorer (lower is better)."""
  scores = alignment_scores(state, sampler, test)
  return 1.0 - float(np.mean([v for k, v in scores.items() if k not in ("n", "all")]))


def _alignment_report(state, iteration, log, sampler, config, mesh) -> None:
  """Per-attribute alignment of the EMA generator on `test` and `test_heldout`
  captions, then on their scenes in paraphrases, logged as
  alignment/<split>[_paraphrased]/<attribute> and printed (as `evaluate`)."""
  from mirrorgan_jax import evaluate  # pylint: disable=import-outside-toplevel
  values = {}
  for split, paraphrased in evaluate.ALIGNMENT_ROWS:
    scores = alignment_scores(state, sampler, _gan_eval_captions(
        config, mesh, split, evaluate.ALIGNMENT_CAPTIONS, paraphrased))
    name = split + "_paraphrased" * paraphrased
    values.update({f"alignment/{name}/{k}": v for k, v in scores.items()})
  log.scalars(iteration, values)
  if log.enabled:
    z_scale, ca_noise = sampling_noise(config)
    noise = ("" if (z_scale, ca_noise) == (1.0, 1.0) else
             f", z x {z_scale:g}, conditioning noise x {ca_noise:g}")
    print(f"alignment (EMA generator{noise}, shapes scorer): "
          + ", ".join(f"{k.removeprefix('alignment/')} {v:.3f}" for k, v in values.items()),
          flush=True)


def _log_samples(state, iteration, log, sampler, test, vocab, workdir) -> None:
  """A grid (one caption of each of the first test images per row, every stage
  across) and the word attention of the first caption, enlarged for viewing
  with each caption beside its row: to TensorBoard and, the same pictures, as
  PNGs in <workdir>/samples/ with the captions in a .txt beside them."""
  indices = list(range(0, len(test["ids"]), test["per_image"]))[:SAMPLE_CAPTIONS]
  images, attention = _generate(state, sampler, test, indices)
  texts = [test["texts"][i] for i in indices]
  rows = [[summaries.to_uint8(stage[i]) for stage in images] for i in range(len(indices))]
  folder = os.path.join(workdir, "samples")
  png = lambda name: os.path.join(folder, f"{iteration:07d}_{name}.png")  # noqa: E731
  log.images(iteration, "samples/stages", summaries.image_grid(rows, texts), png=png("grid"))
  if attention:
    words = vocab.decode(test["ids"][indices[0]]).split()
    log.images(iteration, "samples/attention", summaries.attention_overlay(
        summaries.to_uint8(images[-1][0]), attention[-1][0][:len(words)], words, texts[0]),
        png=png("attention"))
  if log.enabled:
    with open(os.path.join(folder, f"{iteration:07d}_captions.txt"), "w") as f:
      f.write("\n".join(texts) + "\n")


# The phases whose checkpoints hold a text encoder trained for one form of the
# sentence code (`text.sentence_code`).
TEXT_PHASES = ("damsm", "gan")


def _check_sentence_code(meta: dict, config, directory: str) -> None:
  """A text encoder gives the sentence code its config named; the same weights
  read with the other form would give other codes, silently (a run of the
  shapes default started before `text.sentence_code` changed)."""
  if "config" not in meta:
    return
  saved = trained.config_from_meta(meta).text.sentence_code  # "states" before the field
  asked = sentence_code(config)
  if saved != asked:
    raise ConfigError(
        f"{directory}: trained with text.sentence_code={saved!r}, and the config asks for "
        f"{asked!r}; run with --config.text.sentence_code={saved} to go on with it (a run "
        f"started before its config's default changed), or train DAMSM again")


def load_phase_state(run: Run, phase: str, init: Callable, key):
  """The newest state of a pretraining phase: from the config's weights path
  when set (a workdir, or a phase's checkpoint folder), else from this workdir.
  None when there is none."""
  weights = getattr(run.config, phase).weights
  if weights:
    weights = os.path.expanduser(weights)
    inner = os.path.join(weights, "checkpoints", phase)
    directory = inner if os.path.isdir(inner) else weights
    if not os.path.isdir(directory):
      raise ConfigError(f"config.{phase}.weights={weights!r}: no such folder")
  else:
    directory = os.path.join(run.workdir, "checkpoints", phase)
    if not os.path.isdir(directory):
      return None
  ckpt = PhaseCheckpoints(directory, run.config.train.keep_latest)
  try:
    restored = ckpt.restore(lambda meta: {"state": trained.abstract_state(init, key, run.mesh),
                                          "key": _abstract_key(key, run.mesh)})
  finally:
    ckpt.close()
  if restored is None and weights:
    raise CheckpointError(f"config.{phase}.weights: no checkpoint in {directory}")
  if restored is not None and phase in TEXT_PHASES:
    _check_sentence_code(restored.meta, run.config, restored.path)
  return None if restored is None else restored.state["state"]


def run(config, workdir: str, *, stop_after: int | None = None, devices=None) -> dict:
  """Runs the configured phases in `workdir` on `devices` (default: all);
  returns {phase: final state}. Raises Preempted after saving when stopped by
  a signal or after `stop_after` iterations of this invocation."""
  factory.create_models(config)  # validates the config before any work
  phases = parse_phases(config.train.phases)
  stage_schedule(config)
  backbones.check(config, [p for p in phases if p != "gan" and not getattr(config, p).weights])
  workdir = os.path.abspath(os.path.expanduser(workdir))
  mesh = parallel.make_mesh(devices)
  for phase in phases:
    field = {"gan": "batch_size"}.get(phase, f"{phase}.batch_size")
    parallel.check_batch_size(phase_config(config, phase).batch_size, mesh, field)
  is_main = jax.process_index() == 0
  created = is_main and not os.path.exists(workdir)
  try:
    return _run_phases(config, workdir, phases, mesh, is_main, stop_after)
  except BaseException:
    # A run that fails before it logs anything (a broken dataset, say) leaves
    # no workdir behind that it created itself.
    if created and _only_run_info(workdir):
      shutil.rmtree(workdir, ignore_errors=True)
    raise


def _pretrain_phase(run: Run, models, phase: str, key):
  _, ds = pipeline.from_config(phase_config(run.config, phase))
  return run_phase(run, phase, pretrain_segments(run, models, phase), train_data=ds, key=key)


def _run_pretraining(run: Run, models, phases: list[str], keys) -> dict:
  """Trains the pretraining `phases` (damsm, stream): one after the other, or
  with `train.concurrent_pretraining` at once, one thread each (they share
  nothing: each its own programs, data, key and checkpoints, so each ends bit
  for bit as alone). On a CPU neither step keeps both cores busy: at once the
  shapes default's two phases' steps take 0.67x as long (docs/benchmarks.md).
  A phase that fails stops the others, each saving a checkpoint, and its
  error is raised; stops (a signal; `stop_after`, which counts each phase's
  own iterations here) are raised as one Preempted once all have saved."""
  at_once = (run.config.train.get("concurrent_pretraining", False) and len(phases) > 1
             and jax.process_count() == 1)  # hosts must launch programs in one order
  if not at_once:
    return {p: _pretrain_phase(run, models, p, keys[p]) for p in phases}
  runs = {p: dataclasses.replace(run, iterations=0) for p in phases}

  def train(phase):
    try:
      return _pretrain_phase(runs[phase], models, phase, keys[phase])
    except Preempted:  # by a signal, which the others see too, or its own stop_after
      raise
    except BaseException:
      if not run.stop.reason:  # the others save and stop
        run.stop.reason = f"the {phase} phase failed"
      raise

  with concurrent.futures.ThreadPoolExecutor(len(phases), "phase") as pool:
    futures = {p: pool.submit(train, p) for p in phases}
    # Waited on in short turns: the main thread must return to Python for the
    # SIGTERM / SIGINT handlers, which ask every phase to save and stop.
    while concurrent.futures.wait(futures.values(), timeout=0.5).not_done:
      pass
  run.iterations += sum(r.iterations for r in runs.values())
  errors = [f.exception() for f in futures.values() if f.exception() is not None]
  failures = [e for e in errors if not isinstance(e, Preempted)]
  if failures:
    for e in errors:
      if isinstance(e, Preempted):
        logging.warning("%s", e)
    raise failures[0]
  if errors:
    raise Preempted("; ".join(str(e) for e in errors))
  return {p: f.result() for p, f in futures.items()}


def _only_run_info(workdir: str) -> bool:
  return all(set(files) <= set(summaries.RUN_INFO_FILES) if root == workdir else not files
             for root, _, files in os.walk(workdir))


def _run_phases(config, workdir, phases, mesh, is_main, stop_after) -> dict:
  if is_main:
    os.makedirs(workdir, exist_ok=True)
  for phase in phases:  # a read-only folder fails now, not at the first save
    if phase == "gan" or not getattr(config, phase).weights:
      check_writable(os.path.join(workdir, "checkpoints", phase))
  summaries.write_run_info(workdir, config.to_json_best_effort(indent=2), is_main)
  stop = _StopFlag()
  r = Run(config, workdir, mesh, stop, stop_after, is_main=is_main)
  models = factory.create_models(config)
  base = jax.random.key(config.seed)
  keys = {p: jax.random.fold_in(base, i) for i, p in enumerate(PHASES)}
  out = {}
  with stop.installed():
    pretrain = [p for p in PHASES[:-1] if p in phases and not getattr(config, p).weights]
    out.update(_run_pretraining(r, models, pretrain, keys))
    if "gan" in phases:
      texts = out.get("damsm") or load_phase_state(
          r, "damsm", pretrain_init(r, models, "damsm", backbone=False), keys["damsm"])
      streams = out.get("stream") or load_phase_state(
          r, "stream", pretrain_init(r, models, "stream", backbone=False), keys["stream"])
      if texts is None or streams is None:
        missing = "damsm" if texts is None else "stream"
        raise CheckpointError(f"the gan phase needs the {missing} phase: run it (add it to "
                              f"config.train.phases) or set config.{missing}.weights")
      source, ds = pipeline.from_config(phase_config(config, "gan"))
      if is_main:  # generate and evaluate read it: no dataset needed to sample
        trained.save_vocabulary(workdir, source.vocab)
      stream_vars = {"params": streams.net.params, "batch_stats": streams.net.batch_stats}
      pretrained = (texts.text.params, stream_vars,
                    gan_state.damsm_image_variables(config, texts))
      out["gan"] = run_phase(r, "gan", gan_segments(r, pretrained, source.vocab),
                             train_data=ds, key=keys["gan"])
  return out

