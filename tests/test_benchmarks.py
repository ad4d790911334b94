"""benchmarks/gpu_step.py, the prepared GPU measurement (issue 13), run on CPU
at the tiny size so that it runs unchanged on a GPU: every reported field
present and sane, MFU n/a on a CPU, the time budget, the FLOP constant, the
peak table and the early failure on a missing package."""

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import gpu_step

ROOT = Path(__file__).resolve().parents[1]


# `python -m benchmarks.gpu_step ARGS` with the packages a GPU machine may lack made
# unimportable: the step must be built without the data stack (step_time once imported
# the trainer, hence TFDS, which the H200 machine does not have).
NOT_ON_A_GPU_MACHINE = ("tensorflow_datasets", "tensorflow", "grain", "tensorboardX", "orbax",
                        "tqdm")
WITHOUT_THE_DATA_STACK = f"""
import runpy, sys
for name in {NOT_ON_A_GPU_MACHINE!r}:
  sys.modules[name] = None  # `import name` raises ImportError
sys.argv[0] = "gpu_step"
runpy.run_module("benchmarks.gpu_step", run_name="__main__", alter_sys=True)
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """The script as a GPU session runs it (a fresh process, without the data
  stack), at the tiny preset. XLA's optimisations are off: they do not change what is
  checked here and take most of the compile time on a small CPU."""
  out = tmp_path_factory.mktemp("gpu_step") / "report.json"
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  args = ["--preset=tiny", "--iters=2", "--warmup=1", "--dtypes=float32",
          "--max-seconds=900", f"--json={out}"]
  t0 = time.perf_counter()
  proc = subprocess.run([sys.executable, "-c", WITHOUT_THE_DATA_STACK, *args],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
  wall = time.perf_counter() - t0
  assert proc.returncode == 0, proc.stdout + proc.stderr
  return json.loads(out.read_text()), proc.stdout, wall


def test_tiny_run_reports_every_field(tiny_run):
  report, stdout, wall = tiny_run
  assert report["backend"] == "cpu" and report["devices"] == 1
  assert report["birds_flops_per_iteration_batch12"] == 2.03e12
  assert 0 < report["wall_s"] <= wall
  results = report["results"]
  # One dtype: a second compile of the tiny step costs minutes on 2 busy cores;
  # bf16's program is checked in test_bf16.py.
  assert [r["dtype"] for r in results] == ["float32"]
  for r in results:
    assert r["status"] == "ok", r
    assert r["preset"] == "tiny" and r["batch"] == 8 and r["stage_sizes"] == [16, 32]
    assert r["compile_s"] > r["lower_s"] > 0 and r["init_s"] > 0
    assert r["warmup_done"] == 1 and r["iters_done"] == 2 and not r["stopped_early"]
    assert len(r["ms_all"]) == 2
    assert 0 < r["ms_min"] <= r["ms_median"] <= r["ms_max"]
    assert math.isclose(r["images_per_s"], 8000 / r["ms_median"])
    # No FLOP figure of ours for tiny: XLA's count of the traced step is used.
    assert r["model_flops_per_iter"] is None
    assert r["xla_flops_lowered"] > 0 and r["flops_per_iter"] == r["xla_flops_lowered"]
    assert r["flops_source"] == "XLA, before optimisation"
    assert r["tflops_per_s"] > 0
    # A CPU has no entry in the peak table: MFU n/a.
    assert r["peak"] is None
    assert r["mfu_vs_bf16_peak"] is None and r["mfu_vs_tf32_peak"] is None
    plan = r["xla_memory_plan"]
    assert plan is None or plan["total_bytes"] > 0
    assert r["losses_finite"]
  assert [r["init_reused"] for r in results] == [False]
  assert [r["init_on_host"] for r in results] == [False]  # a CPU mesh inits in place
  assert "== tiny float32: stages 16/32 px, batch 8" in stdout
  for field in ("compile ", "iteration   median", "images/s", "FLOP/iter", "XLA plan",
                "device peak", "losses"):
    assert stdout.count(field) == 1, field
  assert stdout.count("MFU n/a") == 1
  print(f"gpu_step tiny, float32: {wall:.1f} s in the subprocess")


def test_benchmark_state_made_on_the_host_equals_the_mesh_init():
  """benchmarks.init_state: the init run on the host CPU (as on a GPU) and put
  on the mesh gives the same arrays, replicated over the mesh, as the init
  compiled for the mesh."""
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import benchmarks  # pylint: disable=import-outside-toplevel
  from mirrorgan_jax import parallel  # pylint: disable=import-outside-toplevel

  def init_fn(key):
    k1, k2 = jax.random.split(key)
    return {"w": jax.nn.initializers.orthogonal()(k1, (48, 32)),
            "b": jax.random.normal(k2, (7,)), "step": jax.numpy.zeros((), "int32")}

  mesh = parallel.make_mesh()
  key = jax.random.key(3)
  direct = parallel.jit_init(init_fn, mesh)(key)
  host = benchmarks.init_state(init_fn, mesh, key, on_host=True)
  assert benchmarks.lower_init(init_fn, mesh, key)[2] is False  # CPU mesh: in place
  for name in direct:
    np.testing.assert_array_equal(np.asarray(host[name]), np.asarray(direct[name]))
    assert host[name].sharding.is_equivalent_to(parallel.replicated(mesh), host[name].ndim)


def test_time_budget_stops_the_loops_early():
  calls = []
  warm, times = gpu_step.time_iterations(lambda: calls.append(1), iters=20, warmup=3,
                                         deadline=time.perf_counter() - 1)
  assert (warm, len(times), len(calls)) == (1, 1, 2)  # at least one of each
  warm, times = gpu_step.time_iterations(lambda: None, iters=4, warmup=0,
                                         deadline=time.perf_counter() + 60)
  assert (warm, len(times)) == (0, 4)


def test_dtypes_past_the_deadline_are_skipped(tmp_path):
  out = tmp_path / "r.json"
  report = gpu_step.main(["--preset=tiny", "--max-seconds=1e-9", f"--json={out}"])
  assert [(r["dtype"], r["status"]) for r in report["results"]] == [
      ("float32", "skipped"), ("bfloat16", "skipped")]
  assert json.loads(out.read_text())["results"] == report["results"]


def test_birds_flop_constant():
  assert gpu_step.BIRDS_FLOPS_PER_ITERATION == 2.03e12
  assert gpu_step.BIRDS_BATCH == 12
  per_iteration = gpu_step.model_flops("birds", 12)
  assert per_iteration == 12 * 169.5e9
  assert abs(per_iteration - 2.03e12) / 2.03e12 < 0.005
  assert gpu_step.model_flops("tiny", 8) is None
  # The aim: 10 ms per birds iteration in bf16 on an H100 is 203 TFLOP/s, 20.6 % MFU.
  u = gpu_step.utilisation(per_iteration, 10.0, "NVIDIA H100 80GB HBM3", 1, "bfloat16")
  assert math.isclose(u["tflops_per_s"], 203.4)
  assert math.isclose(u["mfu_vs_bf16_peak"], 203.4 / 989)
  assert u["mfu_vs_tf32_peak"] is None
  u = gpu_step.utilisation(per_iteration, 20.0, "NVIDIA H200", 2, "float32")
  assert math.isclose(u["mfu_vs_bf16_peak"], 101.7 / (2 * 989))
  assert math.isclose(u["mfu_vs_tf32_peak"], 101.7 / (2 * 494))


@pytest.mark.parametrize("kind, name, bf16", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM", 989),
    ("NVIDIA H100 PCIe", "H100 PCIe", 756),
    ("NVIDIA H200", "H200 (as H100 SXM)", 989),
    ("NVIDIA GH200 480GB", "H200 (as H100 SXM)", 989),
    ("NVIDIA A100-SXM4-80GB", "A100", 312),
    ("NVIDIA A100-PCIE-40GB", "A100", 312),
])
def test_peak_table(kind, name, bf16):
  peak = gpu_step.peak_for(kind)
  assert (peak["name"], peak["bf16"]) == (name, bf16)


def test_unknown_devices_have_no_peak():
  for kind in ("cpu", "TPU v5 lite", "NVIDIA GeForce RTX 4090", "Tesla V100-SXM2-16GB"):
    assert gpu_step.peak_for(kind) is None
    assert gpu_step.utilisation(1e12, 10.0, kind, 1, "float32")["mfu_vs_bf16_peak"] is None


def test_a_missing_package_fails_early_and_is_named(monkeypatch):
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "ml_collections" else real(name, *a))
  with pytest.raises(SystemExit, match=r"ml_collections \(pip: ml-collections\)"):
    gpu_step.main(["--preset=birds"])


def test_birds_needs_no_pillow(monkeypatch):
  """step_time.py imports configs/tiny.py, hence PIL: without pillow the birds
  preset still gets its config (the GPU machine may lack pillow)."""
  assert "PIL" not in gpu_step.required_modules("birds")
  assert "PIL" in gpu_step.required_modules("tiny")
  monkeypatch.setitem(sys.modules, "PIL", None)  # `import PIL` fails
  for name in ("benchmarks.step_time", "configs.tiny", "configs.shapes",
               "mirrorgan_jax.data.shapes"):  # imported afresh, as in a new process
    monkeypatch.delitem(sys.modules, name, raising=False)
    package, _, attr = name.rpartition(".")
    if package in sys.modules:
      monkeypatch.delattr(sys.modules[package], attr, raising=False)
  config = gpu_step.preset_config("birds")
  assert "benchmarks.step_time" not in sys.modules  # the fallback was taken
  assert (config.dataset, config.batch_size, config.model.num_stages) == ("birds", 12, 3)
  with pytest.raises(ModuleNotFoundError):
    gpu_step.preset_config("tiny")


def test_step_time_runs_without_warmup():
  """`--warmup=0` times every step (it raised before any step ran). In a fresh
  process: step_time and train_loop both define the absl flag `--config`."""
  code = """
from benchmarks import step_time
calls = []
def compiled(state, batch, key):
  calls.append(state)
  return state + 1, {"loss": state}
state, metrics, times = step_time.timed_steps(compiled, 0, None, None, warmup=0, steps=2)
assert (state, metrics, calls, len(times)) == (2, {"loss": 1}, [0, 1], 2), (state, metrics, calls)
"""
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                        text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 0, proc.stdout + proc.stderr


def test_kernel_work_counts_the_faults_of_fresh_memory():
  """step_time's `kernel` line: writing 64 MiB of freshly mapped memory shows
  as at least one page fault per 2 MiB (huge pages) and no less system CPU."""
  code = """
import numpy as np
from benchmarks import step_time
system0, faults0 = step_time.kernel_work()
buf = np.empty(64 << 20, np.uint8)
buf[::4096] = 1  # one write per 4 KiB page
system1, faults1 = step_time.kernel_work()
assert faults1 - faults0 >= 32 and system1 >= system0, (faults0, faults1, system0, system1)
"""
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                        text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 0, proc.stdout + proc.stderr


def test_train_loop_splits_the_log_windows_at_checkpoints_and_samples():
  from benchmarks import train_loop  # pylint: disable=import-outside-toplevel
  logs = [{"step": s, "time": t} for s, t in
          ((50, 10.0), (100, 20.0), (150, 39.0), (200, 49.0), (250, 59.0), (300, 70.0))]
  # Checkpoints at 100 and 200, a sample at 150: the windows starting there are busy.
  quiet, busy = train_loop.windows(logs, sample_every=150, checkpoint_every=100)
  assert quiet == [(50, 10.0), (50, 11.0)]
  assert busy == [(50, 19.0), (50, 10.0), (50, 10.0)]
  assert train_loop.windows(logs, 0, 0) == ([(50, 10.0), (50, 19.0), (50, 10.0), (50, 10.0),
                                             (50, 11.0)], [])


def test_evaluate_rate_times_sampling_and_the_measuring_job_at_tiny():
  """benchmarks/evaluate_rate.py at the tiny config on the 8 test devices:
  both jobs run over every timed image and the 30,000-image time follows
  from the rate."""
  from benchmarks import evaluate_rate  # pylint: disable=import-outside-toplevel
  from configs import tiny  # pylint: disable=import-outside-toplevel
  r = evaluate_rate.measure(tiny.get_config(), images=20)
  assert (r["batch"], r["images"], r["devices"], r["stage_sizes"]) == (8, 20, 8, [16, 32])
  assert r["inception_image_size"] == 75 and r["init_s"] > 0
  for job in ("sampling", "measuring"):
    rate = r[f"{job}_images_per_s"]
    assert rate > 0 and r[f"{job}_compile_s"] > 0
    assert math.isclose(r[f"{job}_protocol_minutes"], 30_000 / rate / 60)


def test_step_parts_reads_one_timeline_of_a_device_plane():
  """On a GPU the same op can appear as a kernel on a stream line and again on
  the derived "XLA Ops" line: only the latter is counted; a plane without it is
  read whole; device planes win over the host's."""
  from types import SimpleNamespace as NS  # pylint: disable=import-outside-toplevel
  from benchmarks import step_parts  # pylint: disable=import-outside-toplevel

  def event(name, ns, **stats):
    return NS(name=name, duration_ns=ns, stats=list(stats.items()))

  gpu = NS(name="/device:GPU:0", lines=[
      NS(name="Stream #13(compute)", events=[event("cutlass_kernel_1", 7, hlo_op="fusion.1",
                                                   hlo_module="m")]),
      NS(name="XLA Modules", events=[event("m(1)", 9)]),
      NS(name="XLA Ops", events=[event("fusion.1", 7, hlo_module="m"),
                                 event("convolution.2", 5, hlo_module="m")])])
  tpu = NS(name="/device:TPU:0", lines=[
      NS(name="Stream", events=[event("k", 3, hlo_op="dot.3", hlo_module="m"),
                                event("end:k", 1)])])
  host = NS(name="/host:CPU", lines=[NS(name="t", events=[event("fusion.1", 100)])])
  events = list(step_parts._events(NS(planes=[host, gpu, tpu])))
  assert events == [("fusion.1", "m", 7), ("convolution.2", "m", 5), ("dot.3", "m", 3)]
  assert list(step_parts._events(NS(planes=[host]))) == [("fusion.1", None, 100)]


def test_step_parts_attributes_profiled_ops_by_their_scopes(tmp_path):
  """benchmarks/step_parts.py on a small program with the step's scopes (a
  forward kept by vjp, a D update, a loss whose gradient is pulled back
  through the forward, an update): a real profile's ops land in their parts,
  and only the heavy parts take measurable time."""
  import glob  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from benchmarks import step_parts  # pylint: disable=import-outside-toplevel

  def step(x, w, v):
    with jax.named_scope("text"):
      x = x + 1.0
    with jax.named_scope("g_forward"):
      y, g_vjp = jax.vjp(lambda w: jnp.tanh(x @ w), w)
    with jax.named_scope("d_update_0"):
      v = v - 0.1 * jax.grad(lambda v: jnp.sum(jnp.sin(jax.lax.stop_gradient(y) @ v)))(v)
    with jax.named_scope("g_loss"):
      loss, ct = jax.value_and_grad(lambda y: jnp.sum(jnp.cos(y @ v)))(y)
    with jax.named_scope("g_backward"):
      (grad,) = g_vjp(ct)
    with jax.named_scope("g_update"):
      w = w - 0.1 * grad
    return w, v, loss

  args = [jnp.full((256, 256), 0.01 * i) for i in (1, 2, 3)]
  compiled = jax.jit(step).lower(*args).compile()
  names = step_parts.op_names(compiled.as_text())
  assert {step_parts.part_of(n) for n in names.values()} >= {
      "text", "g_forward", "d_update_0", "g_loss_forward", "g_backward", "g_update"}
  assert step_parts.part_of("jit(s)/g_backward/transpose(jvp(g_forward))/dot_general") == (
      "g_backward")
  assert step_parts.part_of("jit(s)/g_loss/transpose(jvp(Captioner_0))/mul") == "g_backward"
  assert step_parts.part_of("jit(s)/jvp(g_loss)/conv") == "g_loss_forward"
  assert step_parts.part_of("jit(s)/d_update_2/transpose(jvp(g_loss))/x") == "d_update_2"
  assert step_parts.part_of("jit(s)/d_update_edge/conv") == "d_update_edge"
  assert step_parts.ordered({"other": 1, "d_update_10": 1, "g_update": 1, "d_update_edge": 1,
                             "d_update_2": 1, "text": 1}) == [
      "text", "d_update_2", "d_update_10", "d_update_edge", "g_update", "other"]
  compiled(*args)[2].block_until_ready()
  with jax.profiler.trace(str(tmp_path)):
    for _ in range(2):
      compiled(*args)[2].block_until_ready()
  (path,) = glob.glob(str(tmp_path / "**" / "*.xplane.pb"), recursive=True)
  module = compiled.as_text().split()[1].rstrip(",")
  parts = step_parts.part_times(step_parts._events(step_parts.ProfileData.from_file(path)),
                                names, module, 2)
  # The matmuls of the forward, the D update, the G loss and the pulled-back
  # gradient all show up, each in its part.
  for part in ("g_forward", "d_update_0", "g_loss_forward", "g_backward"):
    assert parts.get(part, 0) > 0, (part, parts)
  # The longest ops are named with their part and kind, ranked by their own
  # summed profile time (no claim on which op is heaviest: on a 2-core runner
  # a cheap first op can wait for a thread and come out on top).
  kinds = step_parts.op_kinds(compiled.as_text())
  events = list(step_parts._events(step_parts.ProfileData.from_file(path)))
  top = step_parts.top_ops(events, names, kinds, module, 2, 3)
  per_op = {}
  for op, op_module, ns in events:
    if op in names and op_module in (None, module):
      per_op[op] = per_op.get(op, 0.0) + ns / 2e6
  assert len(top) == 3 and top[0][0] >= top[1][0] >= top[2][0] > 0
  expected = sorted(per_op.items(), key=lambda kv: -kv[1])[:3]
  for (ms, part, kind, name), (op, op_ms) in zip(top, expected):
    assert ms == pytest.approx(op_ms) and name == names[op], (top, expected)
    assert part == step_parts.part_of(name) and kind == kinds[op], top
  assert any(kind.startswith(("dot f32[256,256]", "fusion f32[256,256]")) for _, _, kind, _ in top)


def test_step_parts_names_a_convolution_by_its_kind_shape_and_window():
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from benchmarks import step_parts  # pylint: disable=import-outside-toplevel

  def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

  text = jax.jit(conv).lower(jnp.zeros((2, 8, 8, 3)), jnp.zeros((3, 3, 3, 5))).compile().as_text()
  kinds = set(step_parts.op_kinds(text).values())
  assert "convolution f32[2,8,8,5] 3x3" in kinds, kinds


def test_train_loop_feed_cpu_is_the_host_time_of_each_batch(monkeypatch):
  """The feed's CPU time per batch covers making the batch: a feed made
  slower by 20 ms of busy host work per batch shows it (less a margin for the
  feed's own time, which varies from run to run)."""
  from benchmarks import train_loop  # pylint: disable=import-outside-toplevel
  from configs import tiny  # pylint: disable=import-outside-toplevel
  from mirrorgan_jax.data import pipeline  # pylint: disable=import-outside-toplevel
  config = tiny.get_config()
  plain = train_loop.feed_cpu_ms(config, batches=20)
  real_device_batch = pipeline.device_batch

  def slow(mesh, batch):
    t0 = time.process_time()
    while time.process_time() - t0 < 0.02:
      pass
    return real_device_batch(mesh, batch)

  monkeypatch.setattr(pipeline, "device_batch", slow)
  slowed = train_loop.feed_cpu_ms(config, batches=20)
  assert 0 < plain < slowed and slowed - plain >= 15, (plain, slowed)


def test_pretraining_times_both_phases_alone_and_at_once():
  """benchmarks/pretraining.py at the tiny size: each phase's steps timed alone
  and in its own thread, and the wall time of both at once."""
  from benchmarks import pretraining  # pylint: disable=import-outside-toplevel
  from configs import tiny  # pylint: disable=import-outside-toplevel
  r = pretraining.measure(tiny.get_config(), {"damsm": 2, "stream": 3})
  assert set(r["alone"]) == set(r["at_once"]) == {"damsm", "stream"}
  assert all(t > 0 for t in [*r["alone"].values(), *r["at_once"].values()])
  assert r["wall"] >= max(r["at_once"].values())
