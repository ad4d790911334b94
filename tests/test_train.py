"""The training program end to end at the tiny config on 8 fake devices:
every phase, skipping what is complete, exact resume (mid-phase, across a
phase boundary, across a stage growth), another device count, non-finite
losses, damaged checkpoints, SIGTERM."""

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from PIL import Image

from configs import tiny
from mirrorgan_jax import factory, generate, sampling, trainer
from mirrorgan_jax.checkpointing import PhaseCheckpoints
from mirrorgan_jax.data import shapes_scorer
from mirrorgan_jax.sampling import example_keys
from tests.test_summaries import _events

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def growth_config():
  """damsm 2, stream 2, gan 4 iterations; the gan grows from 1 to 2 stages at 2."""
  c = tiny.get_config()
  c.gan.num_steps = 4
  c.gan.stages = ((0, 1), (2, 2))
  return c


def leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def assert_bitwise_equal(a, b):
  la, lb = leaves(a), leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(x, y)


def metric_lines(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
  """One uninterrupted run of every phase."""
  workdir = str(tmp_path_factory.mktemp("whole"))
  out = trainer.run(growth_config(), workdir)
  return workdir, jax.device_get(out)


def test_every_phase_runs_and_leaves_its_records(whole):
  workdir, out = whole
  assert set(out) == {"damsm", "stream", "gan"}
  assert int(out["gan"].step) == 4 and len(out["gan"].d) == 2
  for name in ("config.json", "versions.json", "devices.json"):
    assert os.path.isfile(os.path.join(workdir, name))
  assert len(json.load(open(os.path.join(workdir, "devices.json")))["devices"]) == 8
  lines = metric_lines(workdir)
  by_phase = {p: [x["step"] for x in lines if x["phase"] == p and "skipped" in x]
              for p in trainer.PHASES}
  assert by_phase == {"damsm": [1, 2], "stream": [1, 2], "gan": [1, 2, 3, 4]}
  gan = [x for x in lines if x["phase"] == "gan" and "g_loss" in x]
  assert all(np.isfinite(x["g_loss"]) and x["skipped"] == 0 for x in gan)
  assert "d_loss_1" not in gan[0] and "d_loss_1" in gan[-1]  # the second stage from 2 on
  for phase in trainer.PHASES:
    assert os.listdir(os.path.join(workdir, "tb", phase))
    ck = PhaseCheckpoints(os.path.join(workdir, "checkpoints", phase))
    meta = ck.meta(ck.steps()[-1])
    ck.close()
    assert meta["complete"] and meta["phase"] == phase
  # The shapes GAN is scored by alignment at each checkpoint: 1 - mean accuracy,
  # and per attribute on both test splits at the end.
  assert 0.0 <= meta["metric"] <= 1.0
  for name in ("grid.png", "attention.png", "captions.txt"):
    assert os.path.isfile(os.path.join(workdir, "samples", f"0000004_{name}"))
  # TensorBoard shows the PNG's pictures: enlarged (16 and 32 px images in
  # cells of at least 128 px), one row per caption.
  shown = {v.tag: np.asarray(Image.open(io.BytesIO(v.image.encoded_image_string)).convert("RGB"))
           for e in _events(os.path.join(workdir, "tb", "gan")) if e.step == 4
           for v in e.summary.value if v.HasField("image")}
  for tag, name in (("samples/stages", "grid"), ("samples/attention", "attention")):
    png = np.asarray(Image.open(os.path.join(workdir, "samples", f"0000004_{name}.png")))
    np.testing.assert_array_equal(shown[tag], png)
  assert shown["samples/stages"].shape[0] >= trainer.SAMPLE_CAPTIONS * 128
  report = [x for x in lines if "alignment/test_heldout/color" in x]
  assert len(report) == 1 and report[0]["step"] == 4 and report[0]["alignment/test/n"] == 80


def test_the_checkpoint_keeps_the_ema_generators_own_statistics_of_its_step(whole):
  """gan.ema_bn_batches (on in tiny): the last checkpoint holds the statistics
  of its own EMA parameters, refreshed at that step, not an earlier step's
  nor the live generator's."""
  workdir, out = whole
  c = growth_config()
  state = generate.TextToImage(workdir)
  mesh = state.mesh
  models = factory.create_models(c)
  captions = trainer._ema_stats_captions(c, mesh)  # pylint: disable=protected-access
  assert captions[0].shape == (c.gan.ema_bn_batches, c.batch_size, c.text.words_num)
  expected = jax.jit(sampling.make_ema_stats(models, c))(out["gan"], *captions)
  for kept, want in zip(leaves(out["gan"].g_ema_stats), leaves(expected)):
    np.testing.assert_allclose(kept, want, rtol=1e-6, atol=1e-7)
  assert_bitwise_equal(state.params["batch_stats"], out["gan"].g_ema_stats)  # what sampling uses
  live = leaves(out["gan"].g.batch_stats)
  assert any(np.abs(a - b).max() > 1e-3 for a, b in zip(leaves(expected), live))


def test_programs_a_phase_runs_once_hold_no_executable_after(whole):
  """Each init and the growth are released once run (birds: the gan init's
  executable holds 197 MiB); the steps keep theirs for the next run."""
  del whole
  held = {k[0]: p._cache_size() for k, p in trainer._COMPILED.items()
          if hasattr(p, "_cache_size")}
  once = {n: c for n, c in held.items() if any(part in n for part in trainer.RUN_ONCE)}
  assert {"damsm_init", "stream_init", "gan_init_1", "gan_init_2", "gan_grow"} <= set(once)
  assert set(once.values()) == {0}, held
  steps = [n for n in held if "_step" in n]
  assert len(steps) == 4 and all(held[n] >= 1 for n in steps), held


def test_a_complete_workdir_is_skipped(whole):
  workdir, out = whole
  before = len(metric_lines(workdir))
  again = trainer.run(growth_config(), workdir)
  assert len(metric_lines(workdir)) == before  # no phase trained again
  assert_bitwise_equal(again["gan"], out["gan"])


def test_a_text_encoder_trained_for_the_other_sentence_code_is_refused(whole, tmp_path):
  """The same weights read with the other `text.sentence_code` would give other
  codes without a word: a run of an earlier default resumed with the new one
  stops before any work, saying which value its checkpoints were trained with."""
  workdir, _ = whole
  c = growth_config()
  assert c.text.sentence_code == "states_mean"  # the shapes default, tiny's too
  c.text.sentence_code = "states"
  before = len(metric_lines(workdir))
  want = r"damsm/2: trained with text.sentence_code='states_mean', and the config asks for " \
      r"'states'; run with --config.text.sentence_code=states_mean"
  with pytest.raises(trainer.ConfigError, match=want):
    trainer.run(c, workdir)  # resuming: damsm is complete and restored first
  assert len(metric_lines(workdir)) == before
  c.train.phases = "gan"  # a new workdir's gan phase on that DAMSM
  c.damsm.weights = c.stream.weights = workdir
  with pytest.raises(trainer.ConfigError, match=want):
    trainer.run(c, str(tmp_path / "gan_only"))
  # AttnGAN's RNN_ENCODER has only the states form: export refuses, writes nothing.
  from mirrorgan_jax import export  # pylint: disable=import-outside-toplevel
  assert export.main(["damsm", "--workdir", workdir, "--out", str(tmp_path / "pth")]) == 2
  assert not os.path.exists(tmp_path / "pth")


def test_resume_is_exact_mid_phase_across_phases_and_across_growth(whole, tmp_path):
  _, expected = whole
  workdir = str(tmp_path)
  # 1: damsm 1 (mid-phase); 2: damsm 2, stream 1 (phase boundary);
  # 3: stream 2, gan 1 (before the growth at 2); 4: gan 2-3 (grown, mid-stage).
  for n, where in ((1, ("damsm", 1)), (2, ("stream", 1)), (2, ("gan", 1)), (2, ("gan", 3))):
    with pytest.raises(trainer.Preempted, match=f"{where[0]}: stopped at iteration {where[1]}"):
      trainer.run(growth_config(), workdir, stop_after=n)
  out = trainer.run(growth_config(), workdir)
  for phase in trainer.PHASES:
    assert_bitwise_equal(out[phase], expected[phase])


def test_pretraining_phases_at_once_end_as_one_after_the_other(whole, tmp_path):
  """damsm and stream in a thread each: stopped after one iteration each (a
  sequential run would stop before stream starts), both save; resumed, both
  end bit for bit as the uninterrupted sequential run."""
  _, expected = whole
  c = growth_config()
  c.train.phases, c.train.concurrent_pretraining = "damsm,stream", True
  workdir = str(tmp_path)
  with pytest.raises(trainer.Preempted, match=r"^damsm: stopped at iteration 1 \(stop_after\)"
                                              r".*; stream: stopped at iteration 1 "):
    trainer.run(c, workdir, stop_after=1)
  out = trainer.run(c, workdir)
  for phase in ("damsm", "stream"):
    assert_bitwise_equal(out[phase], expected[phase])


def test_a_phase_failing_at_once_with_another_stops_it_with_a_checkpoint(tmp_path, caplog):
  """damsm's non-finite loss is the run's error; stream, running beside it,
  saves where it is and says why it stopped."""
  c = tiny.get_config()
  c.train.phases, c.train.concurrent_pretraining = "damsm,stream", True
  c.damsm.gamma3 = float("inf")  # the matching losses become NaN
  c.stream.num_steps = 5_000  # still running when damsm fails (a few seconds in)
  c.train.log_every = c.train.checkpoint_every = 0
  with caplog.at_level(logging.WARNING):
    with pytest.raises(trainer.TrainingStopped, match="damsm: non-finite loss at iteration 1"):
      trainer.run(c, str(tmp_path))
  assert "(the damsm phase failed); checkpoint" in caplog.text
  ck = PhaseCheckpoints(os.path.join(str(tmp_path), "checkpoints", "stream"))
  step = ck.steps()[-1]
  meta = ck.meta(step)
  ck.close()
  assert step < 5_000 and not meta["complete"]


def test_more_steps_continue_a_complete_phase(whole, tmp_path):
  """A finished damsm phase asked for one more iteration goes on from where it
  stopped (and ends equal to an uninterrupted run of that length); asked for
  fewer, it is skipped."""
  _, expected = whole
  c = growth_config()
  c.train.phases = "damsm"
  c.damsm.num_steps = 1
  workdir = str(tmp_path)
  trainer.run(c, workdir)
  c.damsm.num_steps = 2  # the whole run's
  out = trainer.run(c, workdir)
  assert_bitwise_equal(out["damsm"], expected["damsm"])
  steps = [x["step"] for x in metric_lines(workdir) if x["phase"] == "damsm" and "skipped" in x]
  assert steps == [1, 2]
  c.damsm.num_steps = 1
  again = trainer.run(c, workdir)
  assert_bitwise_equal(again["damsm"], expected["damsm"])  # skipped: nothing trained


def test_restore_onto_another_number_of_devices(whole, tmp_path):
  _, expected = whole
  c = growth_config()
  c.train.phases = "damsm"
  with pytest.raises(trainer.Preempted):
    trainer.run(c, str(tmp_path), stop_after=1)  # saved from 8 devices
  out = trainer.run(c, str(tmp_path), devices=jax.devices()[:2])
  # Reductions over 2 devices round differently than over 8, and Adam's first
  # steps magnify that for gradients near zero: compare whole leaves.
  for a, b in zip(leaves(out["damsm"]), leaves(expected["damsm"])):
    assert np.linalg.norm(a - b) <= 1e-4 * max(np.linalg.norm(b), 1e-6)


def test_nonfinite_loss_stops_with_the_terms_or_is_skipped(tmp_path):
  c = tiny.get_config()
  c.train.phases = "damsm"
  c.damsm.gamma3 = float("inf")  # inf * cosine: the matching losses become NaN
  # No log or checkpoint at iteration 1: its finiteness is read once iteration
  # 2 is queued, and the report still names iteration 1.
  c.train.log_every = c.train.checkpoint_every = 0
  with pytest.raises(trainer.TrainingStopped,
                     match=r"damsm: non-finite loss at iteration 1; the update was not "
                           r"applied. Terms: \{.*'damsm_loss': nan.*Last good checkpoint: none"):
    trainer.run(c, str(tmp_path / "stop"))
  c.train.nan_policy = "skip"
  c.train.log_every = c.train.checkpoint_every = 1
  out = trainer.run(c, str(tmp_path / "skip"))
  init = trainer.pretrain_init(
      trainer.Run(c, "", trainer.parallel.make_mesh(), trainer._StopFlag()),
      trainer.factory.create_models(c), "damsm")(jax.random.fold_in(jax.random.key(c.seed), 0))
  assert_bitwise_equal(out["damsm"], init)  # every update was dropped
  skipped = [x["skipped"] for x in metric_lines(str(tmp_path / "skip")) if "skipped" in x]
  assert skipped == [1, 2]  # counted since the phase started


def test_a_damaged_checkpoint_is_reported_and_an_older_one_used(tmp_path, caplog):
  c = tiny.get_config()
  c.train.phases = "damsm"
  c.damsm.num_steps = 4
  with pytest.raises(trainer.Preempted):
    trainer.run(c, str(tmp_path), stop_after=3)
  newest = os.path.join(str(tmp_path), "checkpoints", "damsm", "3")
  for folder, _, files in os.walk(os.path.join(newest, "state")):
    for name in files:
      with open(os.path.join(folder, name), "wb") as f:
        f.write(b"damaged")
  with caplog.at_level(logging.INFO):
    out = trainer.run(c, str(tmp_path))
  assert f"{newest}: damaged or partial checkpoint" in caplog.text
  assert "resuming from" in caplog.text and "(iteration 2)" in caplog.text
  assert int(out["damsm"].step) == 4
  assert os.path.isdir(newest + ".damaged")  # set aside, then written again


@pytest.mark.parametrize("phases", [("damsm",), ("damsm", "stream")])
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path, phases):
  """Also with damsm and stream training at once: each saves."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
  workdir = str(tmp_path)
  proc = subprocess.Popen(
      [sys.executable, os.path.join(ROOT, "train.py"), "--config",
       os.path.join(ROOT, "configs", "tiny.py"), "--workdir", workdir,
       f"--config.train.phases={','.join(phases)}", "--config.damsm.num_steps=100000",
       "--config.stream.num_steps=100000", "--config.train.checkpoint_every=1000",
       f"--config.train.concurrent_pretraining={len(phases) > 1}"],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  path = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(path):
      logged = [json.loads(line)["phase"] for line in open(path).readlines()]
      if all(logged.count(p) >= 2 for p in phases):
        break
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  output, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0, output
  for phase in phases:
    assert f"{phase}: stopped at iteration" in output and "SIGTERM" in output
    ck = PhaseCheckpoints(os.path.join(workdir, "checkpoints", phase))
    step = ck.steps()[-1]
    meta = ck.meta(step)
    ck.close()
    assert step >= 2 and not meta["complete"] and meta["iteration"] == step


def test_runs_that_differ_only_in_what_programs_do_not_read_share_them():
  """A resumed, longer, gan-only or otherwise logged run reuses the compiled
  programs: they are built from `factory.program_config`, which drops exactly those
  fields (a builder reading one would fail in every test of this file)."""
  a = growth_config()
  b = growth_config()
  b.train.log_every, b.train.phases, b.eval.train_metric = 7, "gan", "fid"
  b.data.workers, b.seed, b.damsm.weights, b.stream.weights = 3, 11, "/w", "/w"
  b.damsm.num_steps = b.stream.num_steps = b.gan.num_steps = 99
  pa, pb = factory.program_config(a), factory.program_config(b)
  assert pa.to_json_best_effort() == pb.to_json_best_effort()
  assert not {"train", "eval", "data", "seed"} & set(pa) and "weights" not in pa.damsm
  assert pa.model.to_dict() == a.model.to_dict() and pa.damsm.lr == a.damsm.lr
  for field in ("model.ngf", "loss.stream_weight", "damsm.lr", "batch_size", "dtype"):
    c = growth_config()
    *parents, leaf = field.split(".")
    node = c
    for p in parents:
      node = node[p]
    node[leaf] = "bfloat16" if leaf == "dtype" else node[leaf] * 2
    assert factory.program_config(c).to_json_best_effort() != pa.to_json_best_effort(), field


def test_stage_schedule_is_validated():
  c = tiny.get_config()
  assert trainer.stage_schedule(c) == [(0, 2)]
  c.gan.stages = ((0, 1), (5, 2))
  assert trainer.stage_schedule(c) == [(0, 1), (5, 2)]
  for bad in (((1, 1), (5, 2)), ((0, 1), (5, 1)), ((0, 1),), ((0, 2), (5, 1))):
    c.gan.stages = bad
    with pytest.raises(ValueError, match="config.gan.stages"):
      trainer.stage_schedule(c)
  assert trainer.parse_phases("gan, damsm") == ("damsm", "gan")
  with pytest.raises(ValueError, match="config.train.phases='gan,fid'"):
    trainer.parse_phases("gan,fid")


def _free_port() -> int:
  import socket  # pylint: disable=import-outside-toplevel
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_match_one_process_with_as_many_devices(tmp_path):
  """2 processes x 2 CPU devices (gloo collectives) against 1 process x 4
  devices: 2 DAMSM iterations, each process reading its own rows. The two
  processes then go on through stream and gan, whose checkpoints rank by the
  alignment of sampled images and whose sample grids are written."""
  # One stage: the same paths as two, with half the gan step to compile.
  common = [sys.executable, os.path.join(ROOT, "train.py"), "--config",
            os.path.join(ROOT, "configs", "tiny.py"), "--config.model.num_stages=1"]
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
  single = subprocess.run(
      common + ["--workdir", str(tmp_path / "one"), "--config.train.phases=damsm"],
      cwd=ROOT, capture_output=True,
      text=True, timeout=600,
      env={**env, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
  assert single.returncode == 0, single.stdout + single.stderr
  port = _free_port()
  procs = [subprocess.Popen(
      common + ["--workdir", str(tmp_path / "two")], cwd=ROOT, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True,
      env={**env, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_COORDINATOR_ADDRESS": f"localhost:{port}", "JAX_NUM_PROCESSES": "2",
           "JAX_PROCESS_ID": str(i)}) for i in range(2)]
  outputs = [p.communicate(timeout=1200)[0] for p in procs]
  assert all(p.returncode == 0 for p in procs), "\n".join(outputs)
  devices = json.load(open(tmp_path / "two" / "devices.json"))
  assert devices["process_count"] == 2 and len(devices["devices"]) == 4
  c = tiny.get_config()
  c.train.phases, c.model.num_stages = "damsm", 1
  r = trainer.Run(c, str(tmp_path / "one"), trainer.parallel.make_mesh(), trainer._StopFlag())
  init = trainer.pretrain_init(r, trainer.factory.create_models(c), "damsm")
  key = jax.random.fold_in(jax.random.key(c.seed), 0)
  one = trainer.load_phase_state(r, "damsm", init, key)
  r.workdir = str(tmp_path / "two")
  two = trainer.load_phase_state(r, "damsm", init, key)
  assert int(one.step) == int(two.step) == 2
  # Equal up to float reassociation (gloo's all-reduce sums in another order),
  # which Adam's normalised steps amplify on near-zero gradients: measured up to
  # 2.5e-5 relative. A wrong shard of data differs by ~1e-2 after these 2 steps.
  for a, b in zip(leaves(two), leaves(one)):
    assert np.linalg.norm(a - b) <= 1e-4 * max(np.linalg.norm(b), 1e-6)

  # The gan phase across processes: every checkpoint has its ranking metric,
  # and it is the alignment of the images that checkpoint samples for the
  # test captions (seed 0), recomputed here in one process.
  gan = PhaseCheckpoints(str(tmp_path / "two" / "checkpoints" / "gan"))
  metrics = {s: gan.meta(s)["metric"] for s in gan.steps()}
  gan.close()
  assert sorted(metrics) == [1, 2] and all(np.isfinite(m) for m in metrics.values())
  t2i = generate.TextToImage(str(tmp_path / "two" / "checkpoints" / "gan" / "2"))
  test = trainer._gan_eval_captions(t2i.config, t2i.mesh)
  images = np.concatenate(list(t2i.last_stage_images(
      test["ids"], test["lens"], example_keys(jax.random.key(0), np.arange(len(test["ids"]))))))
  scores = shapes_scorer.score(images, test["texts"])
  assert metrics[2] == pytest.approx(
      1 - np.mean([v for k, v in scores.items() if k not in ("n", "all")]), abs=1e-6)
  for name in ("grid.png", "captions.txt"):
    assert os.path.isfile(tmp_path / "two" / "samples" / f"0000002_{name}")
  # Process 0 alone prints the phase's alignment report.
  assert ["alignment (EMA generator" in o for o in outputs] == [True, False]
