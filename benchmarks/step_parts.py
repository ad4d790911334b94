"""Where a MirrorGAN training iteration spends its time, per part, in the
order of the PyTorch profile of issue 13: text encoding, G forward, each D
update, the G loss forward (the Ds on the fakes, STREAM, KL), the G backward
(through the Ds and STREAM, then G), the update (G's finiteness check, Adam
and EMA; each D's check and Adam step count in its update).

  python -m benchmarks.step_parts --presets=birds --steps=2 --warmup=1
  python -m benchmarks.step_parts --presets=stage64 --steps=3 --top_ops=25

The step is the real one (`gan_step.make_train_step`), compiled once; its ops
carry the named scopes the step opens for each part. A few iterations run under
`jax.profiler.trace`; every executed op's time is summed by the part its
scope names (the backward of the G loss and of G count as G backward; each
D's forward, backward and Adam count as that D's update). Presets, --dtype,
--config and --config.x flags as benchmarks/step_time.py. The parts' sum can
exceed the iteration's wall time where the runtime runs independent ops at
once, and falls short of it by the time between ops. --top_ops=K also lists
the K ops that take longest (their part, kind, output shape, window and name
stack), to see which convolutions a part's time is in.
"""

import collections
import glob
import os
import re
import statistics
import tempfile

from absl import app, flags
import jax
from jax.profiler import ProfileData

import benchmarks
from mirrorgan_jax import host_memory

FLAGS = flags.FLAGS

PARTS = ("text", "g_forward", "d_update", "g_loss_forward", "g_backward", "g_update", "other")


def op_names(hlo_text: str) -> dict[str, str]:
  """Instruction name -> the op_name of its metadata (the JAX name stack), for
  every instruction of a compiled module's text that has one."""
  out = {}
  for m in re.finditer(r"^\s*(?:ROOT )?%?([\w.\-]+) = .*?metadata=\{[^}]*?op_name=\"([^\"]*)\"",
                       hlo_text, re.M):
    out[m.group(1)] = m.group(2)
  return out


def op_kinds(hlo_text: str) -> dict[str, str]:
  """Instruction name -> 'opcode shape [window]' (e.g. 'convolution
  f32[12,256,256,64] 3x3'), for every instruction of a compiled module's text."""
  out = {}
  for m in re.finditer(r"^\s*(?:ROOT )?%?([\w.\-]+) = (\S+?)(?:\{[^}]*\})? ([\w\-]+)\((.*)$",
                       hlo_text, re.M):
    name, shape, opcode, rest = m.groups()
    window = re.search(r"window=\{size=(\S+?)[ }]", rest)
    kind = re.search(r"kind=(\w+)", rest)
    extra = window.group(1) if window else (kind.group(1) if kind and opcode == "fusion" else "")
    out[name] = f"{opcode} {shape} {extra}".rstrip()
  return out


def top_ops(events, names: dict[str, str], kinds: dict[str, str], module: str,
            iterations: int, k: int) -> list[tuple[float, str, str, str]]:
  """The k ops that take longest: (ms per iteration, part, kind, name stack)."""
  totals = collections.Counter()
  for op, op_module, ns in events:
    if op in names and op_module in (None, module):
      totals[op] += ns / 1e6 / iterations
  return [(ms, part_of(names[op]), kinds.get(op, "?"), names[op])
          for op, ms in totals.most_common(k)]


def _bare(component: str) -> str:
  """'transpose(jvp(g_forward))' -> 'g_forward'."""
  while m := re.fullmatch(r"[\w\-]+\((.*)\)", component):
    component = m.group(1)
  return component


def part_of(op_name: str) -> str:
  """The part of the iteration an op belongs to, from its name stack; each D
  update is its own part, 'd_update_<i>' (the edge critic's 'd_update_edge')."""
  names = {_bare(c) for c in op_name.split("/")}
  d = sorted(n for n in names if re.fullmatch(r"d_update_(\d+|edge)", n))
  if d:
    return d[0]
  if "g_update" in names:
    return "g_update"
  if "transpose(" in op_name and names & {"g_loss", "g_backward"}:
    return "g_backward"
  for name, part in (("g_forward", "g_forward"), ("g_loss", "g_loss_forward"), ("text", "text")):
    if name in names:
      return part
  return "other"


def _events(profile: ProfileData):
  """(op name, module, nanoseconds) of every op executed: on the device planes
  where there are some (GPU, TPU), else on the host's (CPU). A device plane can
  hold the same work twice, as kernels on its stream lines and as HLO ops on a
  derived "XLA Ops" line: where that line exists it alone is read."""
  planes = [p for p in profile.planes if p.name.startswith("/device:")]
  planes = planes or [p for p in profile.planes if p.name == "/host:CPU"]
  for plane in planes:
    lines = list(plane.lines)
    lines = [ln for ln in lines if ln.name == "XLA Ops"] or lines
    for line in lines:
      for e in line.events:
        stats = dict(e.stats)
        name = stats.get("hlo_op", e.name)
        if not e.name.startswith("end:"):
          yield name, stats.get("hlo_module"), e.duration_ns


def part_times(events, names: dict[str, str], module: str, iterations: int) -> dict:
  """Milliseconds per iteration of each part, from profiled op events."""
  totals = collections.Counter()
  for op, op_module, ns in events:
    if op in names and op_module in (None, module):
      totals[part_of(names[op])] += ns / 1e6 / iterations
  return dict(totals)


def ordered(parts) -> list[str]:
  """The parts present, in the iteration's order (the Ds by stage, then the
  edge critic's)."""
  ds = sorted((p for p in parts if p.startswith("d_update_")),
              key=lambda p: int(p[9:]) if p[9:].isdigit() else float("inf"))
  return [p for q in PARTS for p in (ds if q == "d_update" else [q]) if p in parts]


def profile_preset(name: str) -> dict:
  from benchmarks import step_time  # pylint: disable=import-outside-toplevel
  config, mesh, state, batch, key, compiled, compile_s = step_time.setup(name)
  state, metrics, times = step_time.timed_steps(compiled, state, batch, key, FLAGS.warmup,
                                                FLAGS.steps)
  text = compiled.as_text()
  module = re.search(r"HloModule (\S+?),", text).group(1)
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      for _ in range(FLAGS.steps):
        state, metrics = compiled(state, batch, key)
        jax.block_until_ready(metrics)
    (path,) = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
    events = list(_events(ProfileData.from_file(path)))
  names = op_names(text)
  parts = part_times(events, names, module, FLAGS.steps)
  wall = statistics.median(times)
  total = sum(parts.values())
  print(f"\n== {name}: batch {config.batch_size}, {config.dtype}, {mesh.size} x "
        f"{jax.devices()[0].device_kind}; step {wall:,.0f} ms (median of {FLAGS.steps}, "
        f"untraced), compile {compile_s:.0f} s")
  for part in ordered(parts):
    print(f"  {part:15s} {parts[part]:10,.1f} ms  {100 * parts[part] / total:5.1f} %")
  print(f"  {'sum of ops':15s} {total:10,.1f} ms  ({100 * total / wall:.0f} % of the step)")
  if FLAGS.top_ops:
    print(f"  the {FLAGS.top_ops} longest ops (ms per iteration, part, kind, name stack):")
    for ms, part, kind, stack in top_ops(events, names, op_kinds(text), module, FLAGS.steps,
                                         FLAGS.top_ops):
      print(f"  {ms:9,.1f}  {part:15s} {kind:45s} {stack[-110:]}")
  return {"step_ms": wall, "compile_s": compile_s, "parts_ms": parts}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  benchmarks.compile_afresh()
  for name in FLAGS.presets:
    profile_preset(name)


if __name__ == "__main__":
  host_memory.restart_with_huge_pages()
  # step_time's flags (presets, dtype, steps, warmup, config), defined on
  # import; not at this module's import, since the tests import it with other
  # benchmarks that define flags of the same names.
  from benchmarks import step_time  # noqa: F401  pylint: disable=unused-import
  flags.DEFINE_integer("top_ops", 0, "Also list this many of the longest ops.")
  app.run(main)
