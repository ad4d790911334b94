"""One prepared GPU measurement of the MirrorGAN training iteration (issue 13).

  python -m benchmarks.gpu_step                       # birds, batch 12, float32 and bfloat16
  python -m benchmarks.gpu_step --dtypes=bfloat16 --iters=50 --json=gpu_step.json
  python -m benchmarks.gpu_step --preset=tiny --iters=2 --warmup=1   # the CPU test's size

For each compute dtype it prints the device kind, the compile time (trace +
lower + XLA compile of the whole step), milliseconds per iteration (median and
min over the timed iterations, each one timed to `block_until_ready` on the
new state and metrics), images/s, the achieved TFLOP/s and the MFU against the
device's dense peak, the FLOP per iteration (our figure for birds, 169.5 GFLOP
per image = 2.03 TFLOP at batch 12, next to XLA's own count from
`cost_analysis`), XLA's memory plan and the device's peak memory.

The step is the training iteration as `train.py` runs it
(`guarded_step.gan_train_step`: the GAN step and its non-finite guard), built and
compiled as `benchmarks/step_time.py` does it (state replicated and donated,
batch sharded over a data mesh): random weights, random images and captions of
the preset's shapes already on the device, so no dataset is read.

MFU. The numerator is the model FLOP (birds: the 169.5 GFLOP/image figure;
other presets: XLA's count of the traced step), the denominator the dense peak of the mesh's
devices from PEAK_TFLOPS (NVIDIA datasheets, sparsity figures halved). Every
dtype is reported against the bf16 dense tensor-core peak, so the two dtypes
compare on one scale and against the aim (at most 10 ms per birds iteration in
bf16 on an H100-class GPU = 2.03 TFLOP / 10 ms = 203 TFLOP/s, 20.6 % of 989).
float32 is also reported against the TF32 dense peak: JAX's default matmul
precision ('default', jax_default_matmul_precision unset) lets XLA run float32
convolutions and matmuls on the tensor cores in TF32 on Ampere and later, so
the TF32 peak, not the plain FP32 one (67 TFLOP/s on H100), is the float32
step's ceiling. An unknown device (a CPU among them) gets MFU n/a.

Memory. `peak_bytes_in_use` is the process's high-water mark: it never goes
down, so a dtype run after another reports the larger of the two. Put the
dtype whose peak matters first (or run one dtype per process); XLA's memory
plan is per dtype.

Budget. --max-seconds bounds the run: the timed loop of a dtype stops early
(at least one timed iteration) when its share of the remaining time is spent,
and a dtype not started before the deadline is skipped; both are reported. A
compilation cannot be interrupted, so run under `timeout` as well. Results are
printed and written to --json after each dtype, so a killed run keeps them.

Needs jax, flax, optax, numpy and ml_collections (the configs; with absl-py
and PyYAML) and fails at once naming what is missing. The presets `tiny` and
`stage64` need pillow too (configs/tiny.py imports the shapes dataset, and
step_time.py imports configs/tiny.py); birds does without it. Uses no jax API
newer than 0.11, and guards cost_analysis / memory_analysis / memory_stats.
"""

import argparse
import importlib.util
import json
import math
import statistics
import sys
import time
import traceback

BIRDS_FLOPS_PER_IMAGE = 169.5e9  # one birds iteration, per image of the batch
BIRDS_FLOPS_PER_ITERATION = 2.03e12  # at batch 12 (= 12 x 169.5 GFLOP, rounded)
BIRDS_BATCH = 12
AIM_MS = 10.0  # issue 13: birds, batch 12, bf16, H100-class GPU

# Dense peaks in TFLOP/s per device: (substring of the lower-cased device_kind,
# name, bf16 tensor core, tf32 tensor core, fp32 non-tensor). First match wins.
PEAK_TFLOPS = (
    ("h100 pcie", "H100 PCIe", 756.0, 378.0, 51.0),
    ("h100 nvl", "H100 NVL", 835.0, 418.0, 60.0),
    ("h200 nvl", "H200 NVL", 835.0, 418.0, 60.0),
    ("h100", "H100 SXM", 989.0, 494.0, 67.0),
    ("h200", "H200 (as H100 SXM)", 989.0, 494.0, 67.0),
    ("a100", "A100", 312.0, 156.0, 19.5),
)

PRESETS = ("birds", "stage64", "tiny")
DTYPES = ("float32", "bfloat16")

# Import name -> what to install.
_PACKAGES = {"numpy": "numpy", "jax": "jax", "flax": "flax", "optax": "optax",
             "ml_collections": "ml-collections", "absl": "absl-py", "yaml": "PyYAML",
             "PIL": "pillow"}


class MissingPackages(SystemExit):
  pass


def required_modules(preset: str) -> list[str]:
  needed = ["numpy", "jax", "flax", "optax", "ml_collections", "absl", "yaml"]
  if preset != "birds":
    needed.append("PIL")
  return needed


def check_packages(preset: str) -> None:
  """Fails before any work, naming every missing package."""
  missing = [m for m in required_modules(preset) if importlib.util.find_spec(m) is None]
  if missing:
    names = ", ".join(f"{m} (pip: {_PACKAGES[m]})" for m in missing)
    raise MissingPackages(
        f"gpu_step: missing Python packages for preset {preset!r}: {names}. "
        "Without network, put a copy of them on PYTHONPATH (ml_collections, absl "
        "and yaml's pure-Python part need no build).")


def preset_config(name: str):
  """step_time.py's preset. For birds without pillow (step_time imports
  configs/tiny.py, hence PIL, at its top) the same config from configs/birds.py."""
  try:
    from benchmarks import step_time
  except ModuleNotFoundError as e:
    if e.name != "PIL" or name != "birds":
      raise
    from configs import birds
    return birds.get_config()
  return step_time.preset_config(name)


def peak_for(device_kind: str):
  kind = device_kind.lower()
  for key, name, bf16, tf32, fp32 in PEAK_TFLOPS:
    if key in kind:
      return {"name": name, "bf16": bf16, "tf32": tf32, "fp32": fp32}
  return None


def model_flops(preset: str, batch: int):
  """Our FLOP count of one iteration, or None where we have none."""
  return BIRDS_FLOPS_PER_IMAGE * batch if preset == "birds" else None


def utilisation(flops, ms, device_kind: str, n_devices: int, dtype: str) -> dict:
  """Achieved TFLOP/s and MFU: against the bf16 dense peak at every dtype, and
  for float32 also against the TF32 dense peak (see the module docstring)."""
  tflops_s = None if flops is None else flops / (ms / 1000.0) / 1e12
  peak = peak_for(device_kind)
  mfu_bf16 = mfu_tf32 = None
  if peak is not None and tflops_s is not None:
    mfu_bf16 = tflops_s / (peak["bf16"] * n_devices)
    if dtype == "float32":
      mfu_tf32 = tflops_s / (peak["tf32"] * n_devices)
  return {"tflops_per_s": tflops_s, "peak": peak, "mfu_vs_bf16_peak": mfu_bf16,
          "mfu_vs_tf32_peak": mfu_tf32}


def xla_flops(stage):
  """XLA's FLOP count of a Lowered or Compiled step, or None."""
  try:
    cost = stage.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax: one dict per computation
      cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) if flops is not None and flops > 0 else None
  except Exception:  # noqa: BLE001 -- not every backend or version has it
    return None


def memory_plan(compiled):
  try:
    mem = compiled.memory_analysis()
  except Exception:  # noqa: BLE001
    return None
  if mem is None:
    return None
  fields = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes",
            "temp_size_in_bytes", "generated_code_size_in_bytes")
  plan = {f: int(getattr(mem, f)) for f in fields if getattr(mem, f, None) is not None}
  if {"argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes"} <= plan.keys():
    plan["total_bytes"] = (plan["argument_size_in_bytes"] + plan["output_size_in_bytes"]
                           + plan["temp_size_in_bytes"] - plan.get("alias_size_in_bytes", 0))
  return plan


def device_peak_bytes(device):
  try:
    stats = device.memory_stats() or {}
  except Exception:  # noqa: BLE001
    return None
  peak = stats.get("peak_bytes_in_use")
  return int(peak) if peak is not None else None


def gib(n):
  return "n/a" if n is None else f"{n / 2**30:,.2f} GiB"


def flop(n):
  if n is None:
    return "n/a"
  return f"{n / 1e12:,.3f} TFLOP" if n >= 1e11 else f"{n / 1e9:,.3f} GFLOP"


def fmt(x, spec=",.2f", suffix=""):
  return "n/a" if x is None else f"{x:{spec}}{suffix}"


def time_iterations(run_once, iters: int, warmup: int, deadline: float):
  """Runs `run_once` (one iteration, blocking) `warmup` times untimed, then
  `iters` times timed; stops each loop at `deadline` (perf_counter seconds)
  but runs at least one warm-up (if any were asked for) and one timed
  iteration. Returns (warm-ups done, milliseconds of each timed iteration)."""
  warmup_done = 0
  while warmup_done < warmup and not (warmup_done and time.perf_counter() >= deadline):
    run_once()
    warmup_done += 1
  times = []
  while len(times) < iters and not (times and time.perf_counter() >= deadline):
    t = time.perf_counter()
    run_once()
    times.append(1000.0 * (time.perf_counter() - t))
  return warmup_done, times


def run_dtype(args, dtype: str, loop_deadline, mesh, init_cache: dict) -> dict:
  """Builds, compiles and times the step at one dtype. `loop_deadline()` is
  called after compilation and returns the perf_counter time the timed loop
  must stop at. `init_cache` carries the initial state from one dtype to the next."""
  import jax
  import numpy as np
  import benchmarks
  from mirrorgan_jax import factory, gan_state, guarded_step, parallel
  from mirrorgan_jax.batch import random_batch
  from mirrorgan_jax.config_check import stage_sizes

  t_init = time.perf_counter()
  config = preset_config(args.preset)
  config.dtype = dtype
  if args.batch:
    config.batch_size = args.batch
  models = factory.create_models(config)
  parallel.check_batch_size(config.batch_size, mesh)
  # The state is float32 at every compute dtype: when the init program is the
  # same as the previous dtype's, its state is put back from the host instead
  # of compiling the init again (slow to compile: seconds on a GPU, about half
  # a minute for `tiny` on a CPU).
  # On a GPU the init is compiled and run on the host's CPU, then replicated
  # (benchmarks.lower_init says why).
  init, init_key, on_host = benchmarks.lower_init(
      lambda k: gan_state.init_gan_state(models, config, k), mesh, jax.random.key(config.seed))
  init_text = init.as_text()
  if init_cache.get("text") == init_text:
    state = benchmarks.place_state(init_cache["state"], mesh, on_host=True)
    init_reused = True
  else:
    init_cache.clear()
    state = benchmarks.place_state(init.compile()(init_key), mesh, on_host)
    # A host copy (np.array copies: the device buffers are donated to the step).
    init_cache.update(text=init_text,
                      state=jax.tree.map(lambda x: np.array(jax.device_get(x)), state))
    init_reused = False
  batch = parallel.global_batch(mesh, random_batch(config))
  key = jax.random.key(1)
  step = parallel.jit_train_step(guarded_step.gan_train_step(models, config), mesh)
  jax.block_until_ready((state, batch))

  t0 = time.perf_counter()
  lowered = step.lower(state, batch, key)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()

  carry = {"state": state, "metrics": None}

  def run_once():
    carry["state"], carry["metrics"] = compiled(carry["state"], batch, key)
    jax.block_until_ready((carry["state"], carry["metrics"]))

  warmup_done, times = time_iterations(run_once, args.iters, args.warmup, loop_deadline())
  metrics = carry["metrics"]

  device = mesh.devices.flat[0]
  n_dev = int(mesh.size)
  med = statistics.median(times)
  ours = model_flops(args.preset, config.batch_size)
  xla_lowered, xla_compiled = xla_flops(lowered), xla_flops(compiled)
  if ours is not None:
    flops, source = ours, "ours (169.5 GFLOP/image)"
  elif xla_lowered is not None:
    flops, source = xla_lowered, "XLA, before optimisation"
  else:
    flops, source = xla_compiled, "XLA, compiled" if xla_compiled is not None else None
  d_loss, g_loss = float(metrics["d_loss"]), float(metrics["g_loss"])
  return {
      "dtype": dtype,
      "status": "ok",
      "preset": args.preset,
      "stage_sizes": list(stage_sizes(config)),
      "batch": int(config.batch_size),
      "stream_backbone": config.stream.backbone,
      "devices": n_dev,
      "device_kind": device.device_kind,
      "platform": device.platform,
      "init_s": t0 - t_init,  # models, compiled init, random batch on the device
      "init_reused": init_reused,
      "init_on_host": on_host,
      "lower_s": t1 - t0,
      "compile_s": t2 - t0,  # trace + lower + XLA compile
      "warmup_done": warmup_done,
      "iters_requested": args.iters,
      "iters_done": len(times),
      "stopped_early": len(times) < args.iters,
      "ms_median": med,
      "ms_min": min(times),
      "ms_max": max(times),
      "ms_all": times,
      "images_per_s": 1000.0 * config.batch_size / med,
      "flops_per_iter": flops,
      "flops_source": source,
      "model_flops_per_iter": ours,
      "xla_flops_lowered": xla_lowered,  # the traced program, before XLA's passes
      "xla_flops_compiled": xla_compiled,  # after them (fusions, library calls)
      "xla_tflops_per_s": (None if xla_lowered is None
                           else xla_lowered / (med / 1000.0) / 1e12),
      **utilisation(flops, med, device.device_kind, n_dev, dtype),
      "xla_memory_plan": memory_plan(compiled),
      "device_peak_bytes": device_peak_bytes(device),
      "d_loss": d_loss,
      "g_loss": g_loss,
      "losses_finite": math.isfinite(d_loss) and math.isfinite(g_loss),
      "update_skipped": (float(metrics["update_skipped"]) if "update_skipped" in metrics
                         else None),
  }


def print_result(r: dict) -> None:
  if r["status"] != "ok":
    print(f"\n== {r['dtype']}: {r['status']} ({r.get('reason', '')})", flush=True)
    return
  sizes = "/".join(str(s) for s in r["stage_sizes"])
  print(f"\n== {r['preset']} {r['dtype']}: stages {sizes} px, batch {r['batch']}, "
        f"STREAM {r['stream_backbone']}, {r['devices']} x {r['device_kind']}")
  print(f"  compile     {r['compile_s']:,.1f} s (of which trace + lower {r['lower_s']:,.1f} s;"
        f" state init before it {r['init_s']:,.1f} s"
        f"{' on the host CPU' if r['init_on_host'] else ''}"
        f"{', same as the previous dtype' if r['init_reused'] else ''})")
  early = "  STOPPED EARLY by --max-seconds" if r["stopped_early"] else ""
  print(f"  iteration   median {r['ms_median']:,.2f} ms   min {r['ms_min']:,.2f} ms   "
        f"max {r['ms_max']:,.2f} ms   ({r['iters_done']} of {r['iters_requested']} timed "
        f"after {r['warmup_done']} warm-up){early}")
  print(f"  throughput  {r['images_per_s']:,.2f} images/s")
  model = r["model_flops_per_iter"]
  print(f"  FLOP/iter   ours {flop(model)}   XLA cost_analysis: before optimisation "
        f"{flop(r['xla_flops_lowered'])}, compiled {flop(r['xla_flops_compiled'])}"
        f"   (MFU uses: {r['flops_source'] or 'n/a'})")
  peak = r["peak"]
  if peak is None:
    print(f"  achieved    {fmt(r['tflops_per_s'], ',.4f', ' TFLOP/s')}   "
          f"MFU n/a (no peak known for {r['device_kind']!r})")
  else:
    line = (f"  achieved    {fmt(r['tflops_per_s'], ',.1f', ' TFLOP/s')}   MFU "
            f"{fmt(r['mfu_vs_bf16_peak'] and 100 * r['mfu_vs_bf16_peak'], '.1f', ' %')} of the "
            f"bf16 dense peak ({peak['bf16']:g} TFLOP/s x {r['devices']}, {peak['name']})")
    if r["mfu_vs_tf32_peak"] is not None:
      line += (f";  {100 * r['mfu_vs_tf32_peak']:.1f} % of the TF32 dense peak "
               f"({peak['tf32']:g}: float32 runs as TF32 at JAX's default precision)")
    print(line)
    if r["xla_tflops_per_s"] is not None and model is not None:
      print(f"              {r['xla_tflops_per_s']:,.1f} TFLOP/s by XLA's count before "
            "optimisation")
    if r["preset"] == "birds" and r["batch"] == BIRDS_BATCH and r["dtype"] == "bfloat16" \
        and peak["name"].startswith(("H100", "H200")):
      met = "met" if r["ms_median"] <= AIM_MS else "NOT met"
      print(f"  aim         <= {AIM_MS:g} ms per birds iteration in bf16: {met}")
  plan = r["xla_memory_plan"]
  if plan:
    print(f"  XLA plan    arguments {gib(plan.get('argument_size_in_bytes'))}, temporaries "
          f"{gib(plan.get('temp_size_in_bytes'))}, outputs {gib(plan.get('output_size_in_bytes'))}"
          f" (donated state aliased: {gib(plan.get('alias_size_in_bytes'))}), "
          f"total {gib(plan.get('total_bytes'))}")
  else:
    print("  XLA plan    n/a")
  print(f"  device peak {gib(r['device_peak_bytes'])}"
        + ("" if r["device_peak_bytes"] is None else
           " (peak_bytes_in_use: the process's high-water mark so far)"))
  print(f"  losses      d {r['d_loss']:.4f}   g {r['g_loss']:.4f}   "
        f"update skipped {fmt(r['update_skipped'], 'g')}", flush=True)


def parse_args(argv):
  p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_step", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--preset", default="birds", choices=PRESETS)
  p.add_argument("--batch", type=int, default=0, help="batch size (default: the preset's)")
  p.add_argument("--dtypes", default="float32,bfloat16",
                 help="comma-separated compute dtypes, timed in this order")
  p.add_argument("--iters", type=int, default=20, help="timed iterations per dtype")
  p.add_argument("--warmup", type=int, default=3, help="untimed iterations after compiling")
  p.add_argument("--max-seconds", type=float, default=480.0,
                 help="budget for the whole run (see the module docstring)")
  p.add_argument("--devices", type=int, default=0,
                 help="use the first N devices (default: all)")
  p.add_argument("--json", default="", help="write the results to this file")
  args = p.parse_args(argv)
  args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
  bad = [d for d in args.dtypes if d not in DTYPES]
  if bad or not args.dtypes:
    p.error(f"--dtypes: {bad or 'none'}; choose from {', '.join(DTYPES)}")
  if args.iters < 1 or args.warmup < 0 or args.max_seconds <= 0:
    p.error("--iters must be >= 1, --warmup >= 0, --max-seconds > 0")
  return args


def main(argv=None) -> dict:
  """Runs the benchmark; returns (and writes to --json) the report."""
  args = parse_args(sys.argv[1:] if argv is None else argv)
  start = time.perf_counter()
  deadline = start + args.max_seconds
  check_packages(args.preset)

  import jax
  import benchmarks
  from mirrorgan_jax import parallel

  benchmarks.compile_afresh()

  devices = jax.devices()[:args.devices] if args.devices else jax.devices()
  mesh = parallel.make_mesh(devices)
  report = {
      "command": "python -m benchmarks.gpu_step " + " ".join(
          sys.argv[1:] if argv is None else argv),
      "jax_version": jax.__version__,
      "backend": jax.default_backend(),
      "device_kind": devices[0].device_kind,
      "devices": len(devices),
      "default_matmul_precision": str(getattr(jax.config, "jax_default_matmul_precision",
                                              None)),
      "birds_flops_per_iteration_batch12": BIRDS_FLOPS_PER_ITERATION,
      "birds_flops_per_image": BIRDS_FLOPS_PER_IMAGE,
      "max_seconds": args.max_seconds,
      "results": [],
  }
  print(f"jax {jax.__version__}, backend {report['backend']}, {len(devices)} x "
        f"{report['device_kind']}, preset {args.preset}, dtypes {','.join(args.dtypes)}, "
        f"budget {args.max_seconds:g} s", flush=True)

  def write():
    report["wall_s"] = time.perf_counter() - start
    if args.json:
      with open(args.json, "w") as f:
        json.dump(report, f, indent=1)

  init_cache = {}
  for i, dtype in enumerate(args.dtypes):
    if time.perf_counter() >= deadline:
      result = {"dtype": dtype, "status": "skipped", "reason": "--max-seconds reached"}
    else:

      def loop_deadline(remaining=len(args.dtypes) - i):
        # This dtype's timed loop gets its share of what is left after compiling.
        now = time.perf_counter()
        return now + max(0.0, deadline - now) / remaining

      try:
        result = run_dtype(args, dtype, loop_deadline, mesh, init_cache)
      except Exception as e:  # noqa: BLE001 -- keep the other dtype's figures
        traceback.print_exc()
        result = {"dtype": dtype, "status": "failed", "reason": f"{type(e).__name__}: {e}"}
    report["results"].append(result)
    print_result(result)
    write()
  print(f"\ntotal {time.perf_counter() - start:,.1f} s"
        + (f", results in {args.json}" if args.json else ""), flush=True)
  write()
  return report


if __name__ == "__main__":
  sys.exit(1 if any(r["status"] == "failed" for r in main()["results"]) else 0)
