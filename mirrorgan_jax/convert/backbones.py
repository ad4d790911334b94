"""The ImageNet backbones under DAMSM and STREAM: their weights files, and
putting them into the pretraining states.

The damsm phase trains two projections on a frozen Inception-v3, the stream
phase a decoder on a frozen ResNet-152: on random backbones neither can learn
anything useful, so a run of those phases without weights is refused
(`check`) unless `config.train.allow_random_backbones` says otherwise.

A weights field takes the PyTorch file as it is downloaded (converted when
read) or our `.npz` from `python -m mirrorgan_jax.convert resnet152|inception`.
"""

import dataclasses
import functools
import logging
import os

import jax
import numpy as np

from mirrorgan_jax import parallel
from mirrorgan_jax.config_check import ConfigError
from mirrorgan_jax.convert import core


@dataclasses.dataclass(frozen=True)
class Backbone:
  phase: str  # the pretraining phase that freezes it
  field: str  # the config field holding its weights file
  kind: str  # the converter's kind
  backbone_field: str  # the field choosing it ...
  backbone: str  # ... and the value that means "this ImageNet network"
  files: str  # what to download, for the message


BACKBONES = (
    Backbone("damsm", "image_encoder.inception_weights", "inception",
             "image_encoder.backbone", "inception_v3",
             "torchvision's ImageNet Inception-v3 (inception_v3_google-0cc3c7bd.pth, or "
             "1a9a5a14 as AttnGAN used) or AttnGAN's DAMSM image encoder "
             "(DAMSMencoders/bird/image_encoder200.pth, coco/image_encoder100.pth)"),
    Backbone("stream", "stream.resnet_weights", "resnet152", "stream.backbone", "resnet152",
             "torchvision's ImageNet ResNet-152 (resnet152-394f9c45.pth or "
             "resnet152-f82ba261.pth)"),
)


def _field(config, path: str, default=""):
  node = config
  for part in path.split("."):
    if part not in node:  # configs saved before the field existed
      return default
    node = node[part]
  return node


def needed(config, phase: str) -> Backbone | None:
  """The ImageNet backbone the phase freezes, if the config uses one."""
  for b in BACKBONES:
    if b.phase == phase and _field(config, b.backbone_field) == b.backbone:
      return b
  return None


def check(config, phases) -> None:
  """Refuses, before any work, to run `phases` (damsm, stream) on a random
  ImageNet backbone, naming the field and the file to get; logs loudly when
  `config.train.allow_random_backbones` allows it."""
  allowed = bool(_field(config, "train.allow_random_backbones", False))
  for phase in phases:
    b = needed(config, phase)
    if b is None:
      continue
    path = _field(config, b.field)
    if path:
      path = os.path.expanduser(path)
      if not os.path.isfile(path):
        raise ConfigError(f"config.{b.field}={path!r}: no such file ({b.files})")
    elif allowed:
      logging.warning("%s phase: RANDOM %s weights (config.%s is empty and "
                      "config.train.allow_random_backbones is True): its features are "
                      "untrained, nothing it learns transfers to real data", phase, b.kind,
                      b.field)
    else:
      raise ConfigError(
          f"config.{b.field} is empty: the {phase} phase would train on a random {b.kind} "
          f"({b.backbone_field}={b.backbone!r}) and learn nothing useful. Download "
          f"{b.files} and set --config.{b.field}=PATH (README, 'PyTorch weights'); or skip "
          f"the phase with config.{phase}.weights; or set "
          f"config.train.allow_random_backbones=True for benchmarks and tests")


def save_npz(path: str, kind: str, variables) -> None:
  """Our .npz of a backbone: flat keys and the kind."""
  os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
  arrays = {k: np.asarray(v, np.float32) for k, v in core.flatten(variables).items()}
  np.savez(path, __kind__=np.array(kind), **arrays)


@functools.lru_cache(maxsize=4)
def _load(kind: str, path: str, mtime: float) -> dict:
  del mtime  # part of the cache key: a rewritten file is read again
  if path.endswith(".npz"):
    try:
      with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
      raise core.ConversionError(f"{path}: not a readable .npz ({e})") from e
    stored = str(arrays.pop("__kind__", ""))
    if stored != kind:
      raise core.ConversionError(f"{path}: holds {stored or 'no kind'}, {kind} expected "
                                 f"(python -m mirrorgan_jax.convert {kind} FILE --out X.npz)")
    variables = core.unflatten(arrays)
    core.to_torch(kind, variables)  # checks every variable is there, in shape
    return variables
  return core.from_torch(kind, path)


def load(kind: str, path: str) -> dict:
  """Variables of a backbone from a PyTorch file or our .npz (cached)."""
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such file ({kind} weights)")
  return _load(kind, path, os.path.getmtime(path))


def install(state, phase: str, variables):
  """The pretraining state with the backbone's variables in place of its own
  (pure: it runs inside `jit_init`'s program)."""
  if phase == "damsm":
    net = state.image
    net = net.replace(params={**net.params, "inception": variables["params"]},
                      batch_stats={**net.batch_stats, "inception": variables["batch_stats"]})
    return state.replace(image=net)
  net = state.net
  enc_p, enc_b = net.params["encoder"], net.batch_stats["encoder"]
  net = net.replace(params={**net.params, "encoder": {**enc_p, "resnet": variables["params"]}},
                    batch_stats={**net.batch_stats,
                                 "encoder": {**enc_b, "resnet": variables["batch_stats"]}})
  return state.replace(net=net)


def weights_file(config, phase: str) -> tuple[str, str] | None:
  """(converter kind, path) of the backbone weights the config gives the
  phase, or None (no ImageNet backbone, or its field empty)."""
  b = needed(config, phase)
  path = _field(config, b.field) if b else ""
  return (b.kind, path) if path else None


def jit_init(init_state, phase: str, mesh, with_weights: bool):
  """The phase's fresh state as one jitted program: `key -> state`, or with
  `with_weights` `(key, backbone variables) -> state` with them installed.
  Installed inside the program, the random backbone that `init_state` draws
  is never used and XLA drops it: on birds the stream phase's init compiled
  in 73 s and held 122 MiB with ResNet-152's random draws (docs/benchmarks.md)."""
  if not with_weights:
    return parallel.jit_init(init_state, mesh)
  return parallel.jit_init(lambda key, variables: install(init_state(key), phase, variables),
                           mesh)


def with_weights(init, weights: tuple[str, str], mesh):
  """`key -> state` from `jit_init(..., with_weights=True)` and `weights_file`'s
  (kind, path): the file read (once per process) and placed on every device;
  the program writes fresh buffers (the step donates the state)."""
  kind, path = weights

  def init_with_weights(key):
    return init(key, jax.device_put(load(kind, path), parallel.replicated(mesh)))

  return init_with_weights
