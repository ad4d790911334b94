"""PyTorch state dicts <-> the Flax variables of our networks, both ways.

`from_torch(kind, files, config)` returns the variables (`{"params": ...,
"batch_stats": ...}`) of the module `factory.create_models(config)` builds for
`kind`; `to_torch(kind, variables, config, path)` is its inverse and writes
official-named state dicts. Every tensor must find its place and every
variable must be filled, or a `ConversionError` names what does not fit and
nothing is returned or written.

Layouts: conv OIHW <-> HWIO; linear (out, in) <-> (in, out); LSTM weights
(4H, in) in PyTorch's gate order i, f, g, o <-> one (in, H) kernel per gate.
PyTorch keeps two LSTM bias vectors (b_ih + b_hh), Flax one: import adds
them; export writes the sum as `bias_ih_l0` and zeros as `bias_hh_l0` (the
same network, other numbers in the file). BatchNorm's `num_batches_tracked`
is not needed here (momentum is fixed): ignored on import, written as 0.
"""

import dataclasses
import os
import re
from typing import Callable, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

from mirrorgan_jax import config_check, factory
from mirrorgan_jax.convert import names as names_lib
from mirrorgan_jax.convert import torch_pickle, torch_save
from mirrorgan_jax.gan_state import example_inputs
from mirrorgan_jax.metrics import inception_net
from mirrorgan_jax.models.inception import InceptionV3
from mirrorgan_jax.models.resnet import ResNet

KINDS = ("text_encoder", "image_encoder", "generator", "discriminators", "captioner",
         "resnet152", "inception", "fid_inception")

_GATES = ("i", "f", "g", "o")  # PyTorch's order of the LSTM's four blocks
_LSTM_LEAVES = {f"{a}{g}" for a in "ih" for g in _GATES}
_ALWAYS_SKIPPED = (r"(^|\.)num_batches_tracked$",)
_SKIPPED = {  # tensors of the PyTorch file that our module has no use for
    "resnet152": (r"^fc\.",),  # the ImageNet classifier: STREAM uses the pooled features
    "inception": (r"^AuxLogits\.", r"^fc\.", r"^emb_features\.", r"^emb_cnn_code\."),
    "fid_inception": (r"^AuxLogits\.",),
}


class ConversionError(ValueError):
  """Weights that do not fit the network (named tensors, shapes, counts)."""


def require_official_sentence_code(config, where: str, fix: str = "") -> None:
  """The official modules' sentence code is the LSTM's last states only
  (`text.sentence_code` "states"); weights moved across with the other form
  would encode captions differently, without a word."""
  code = config_check.sentence_code(config)
  if code != "states":
    raise ConversionError(
        f"{where} has text.sentence_code={code!r}, and AttnGAN's RNN_ENCODER gives the "
        f"LSTM's last states only ('states'): the same weights would encode captions "
        f"differently{fix}")


@dataclasses.dataclass(frozen=True)
class _Rule:
  """Some PyTorch tensors <-> some of our variables, and the two transforms."""
  torch: tuple[str, ...]
  flax: tuple[str, ...]
  to_flax: Callable[[list], list]
  to_torch: Callable[[list], list]
  file: int = 0
  optional: tuple[str, ...] = ()  # may be absent from a file (older PyTorch)


def _conv(t, k, b, file):
  torch = (f"{t}.weight",) + ((f"{t}.bias",) if b else ())
  flax = (k + "/kernel",) + ((k + "/bias",) if b else ())
  return _Rule(torch, flax,
               lambda a: [a[0].transpose(2, 3, 1, 0)] + a[1:],
               lambda a: [a[0].transpose(3, 2, 0, 1)] + a[1:], file)


def _linear(t, k, b, file):
  torch = (f"{t}.weight",) + ((f"{t}.bias",) if b else ())
  flax = (k + "/kernel",) + ((k + "/bias",) if b else ())
  return _Rule(torch, flax, lambda a: [a[0].T] + a[1:], lambda a: [a[0].T] + a[1:], file)


def _conv1x1_as_dense(t, k, file):
  return _Rule((f"{t}.weight",), (k + "/kernel",),
               lambda a: [a[0][:, :, 0, 0].T], lambda a: [a[0].T[:, :, None, None]], file)


def _embedding(t, k, file):
  return _Rule((f"{t}.weight",), (k + "/embedding",), list, list, file)


def _batch_norm(t, k, file):
  col_path = k.split("/", 1)[1]
  torch = tuple(f"{t}.{n}" for n in ("weight", "bias", "running_mean", "running_var",
                                     "num_batches_tracked"))
  flax = (f"params/{col_path}/scale", f"params/{col_path}/bias",
          f"batch_stats/{col_path}/mean", f"batch_stats/{col_path}/var")
  return _Rule(torch, flax, lambda a: a[:4], lambda a: a + [np.array(0, np.int64)], file,
               optional=(torch[-1],))


def _lstm(t, suffix, k, file):
  torch = tuple(f"{t}.{n}_l0{suffix}" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
  flax = (tuple(f"{k}/i{g}/kernel" for g in _GATES) + tuple(f"{k}/h{g}/kernel" for g in _GATES)
          + tuple(f"{k}/h{g}/bias" for g in _GATES))

  def to_flax(a):
    w_ih, w_hh, b = a[0], a[1], a[2] + a[3]
    return ([w.T for w in np.split(w_ih, 4)] + [w.T for w in np.split(w_hh, 4)]
            + list(np.split(b, 4)))

  def to_torch(a):
    b = np.concatenate(a[8:])
    return [np.concatenate([w.T for w in a[:4]]), np.concatenate([w.T for w in a[4:8]]),
            b, np.zeros_like(b)]

  return _Rule(torch, flax, to_flax, to_torch, file)


def _rules(expected: dict, names: Callable) -> list[_Rule]:
  """One rule per module of `expected` ({flat key: shape}), typed by its leaves."""
  modules: dict[tuple, dict] = {}
  for key, shape in expected.items():
    _, *path, leaf = key.split("/")
    if len(path) > 1 and path[-1] in _LSTM_LEAVES:
      path, leaf = path[:-1], "lstm"
    modules.setdefault(tuple(path), {})[leaf] = shape
  rules = []
  for path, leaves in modules.items():
    try:
      target = names(path)
    except names_lib.NoPlace:
      raise ConversionError(f"our module {'/'.join(path)} has no official counterpart "
                            f"(this configuration has no PyTorch equivalent)") from None
    k, t, f = "params/" + "/".join(path), target.name, target.file
    kinds = set(leaves)
    if kinds == {"lstm"}:
      rules.append(_lstm(t, target.lstm_suffix, k, f))
    elif kinds == {"embedding"}:
      rules.append(_embedding(t, k, f))
    elif kinds == {"scale", "bias", "mean", "var"}:
      rules.append(_batch_norm(t, k, f))
    elif kinds in ({"kernel"}, {"kernel", "bias"}):
      bias = "bias" in kinds
      if target.conv1x1:
        rules.append(_conv1x1_as_dense(t, k, f))
      elif len(leaves["kernel"]) == 4:
        rules.append(_conv(t, k, bias, f))
      else:
        rules.append(_linear(t, k, bias, f))
    else:
      raise ConversionError(f"our module {'/'.join(path)} has variables {sorted(kinds)}: "
                            f"no known PyTorch layer")
  return rules


def flatten(variables) -> dict:
  return {"/".join(p): v for p, v in
          flax.traverse_util.flatten_dict(flax.core.unfreeze(variables)).items()}


def unflatten(flat: dict) -> dict:
  return flax.traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


def _shapes(init: Callable) -> dict:
  return {k: tuple(v.shape) for k, v in flatten(jax.eval_shape(init)).items()}


@dataclasses.dataclass(frozen=True)
class _Net:
  """One network of a kind: its variables' shapes and where they live."""
  expected: dict
  names: Callable
  files: int  # state dicts it reads
  label: str
  skipped: tuple = ()


def _nets(kind: str, config, states: Sequence[dict] | None = None) -> list[_Net]:
  """The networks of `kind` for `config` (several for discriminators)."""
  if kind not in KINDS:
    raise ConversionError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
  key = jax.random.key(0)
  skipped = _ALWAYS_SKIPPED + _SKIPPED.get(kind, ())
  if kind == "resnet152":
    return [_Net(_shapes(lambda: ResNet(152).init(key, jnp.zeros((1, 64, 64, 3)))),
                 names_lib.resnet, 1, "ResNet-152 (torchvision)", skipped)]
  if kind == "inception":
    return [_Net(_shapes(lambda: InceptionV3().init(key, jnp.zeros((1, 299, 299, 3)))),
                 names_lib.inception, 1, "Inception-v3 (torchvision)", skipped)]
  if kind == "fid_inception":
    variant, classes = fid_variant(states[0] if states else None)
    model = inception_net.model_for(variant, classes)
    return [_Net({k: tuple(v) for k, v in inception_net.expected_shapes(model).items()},
                 names_lib.inception, 1, f"Inception-v3 ({variant})", skipped)]
  models = factory.create_models(config)
  x = example_inputs(config)
  if kind == "text_encoder":
    if config.text.hidden_dim % 2:
      raise ConversionError("config.text.hidden_dim must be even (two directions)")
    return [_Net(_shapes(lambda: models.text_encoder.init(key, x["captions"], x["lengths"])),
                 names_lib.text_encoder, 1, "RNN_ENCODER", skipped)]
  if kind == "image_encoder":
    if config.image_encoder.backbone != "inception_v3":
      raise ConversionError(f"config.image_encoder.backbone={config.image_encoder.backbone!r}:"
                            f" the official CNN_ENCODER is the inception_v3 one")
    return [_Net(_shapes(lambda: models.image_encoder.init(key, x["images"][-1])),
                 names_lib.image_encoder, 1, "CNN_ENCODER", skipped)]
  if kind == "generator":
    if config.model.base_size != 64:
      raise ConversionError(f"config.model.base_size={config.model.base_size}: G_NET's "
                            f"first stage is 64 px")
    return [_Net(_shapes(lambda: models.generator.init(
        {"params": key, "noise": key}, x["z"], x["sentence"], x["words"], x["mask"])),
        names_lib.generator, 1, "G_NET", skipped)]
  if kind == "discriminators":
    nets = []
    for i, (d, img) in enumerate(zip(models.discriminators, x["images"])):
      if d.image_size < 64:
        raise ConversionError(f"discriminator of {d.image_size} px: the official ones are "
                              f"64 px and larger")
      n_extra = (d.image_size // 64).bit_length() - 1
      nets.append(_Net(_shapes(lambda d=d, img=img: d.init(key, img, x["sentence"])),
                       names_lib.discriminator(n_extra), 1,
                       f"D_NET{d.image_size} (netD{i})", skipped))
    return nets
  # captioner
  if config.stream.backbone != "resnet152":
    raise ConversionError(f"config.stream.backbone={config.stream.backbone!r}: the official "
                          f"CAPTION_CNN is the resnet152 one")
  return [_Net(_shapes(lambda: models.captioner.init(key, x["images"][-1], x["captions"])),
               names_lib.captioner, 2, "CAPTION_CNN + CAPTION_RNN", skipped)]


def fid_variant(state: dict | None) -> tuple[str, int]:
  """pytorch-fid's Inception (1008 classes) or torchvision's (1000)."""
  fc = None if state is None else state.get("fc.weight")
  classes = inception_net.PYTORCH_FID_CLASSES if fc is None else int(np.shape(fc)[0])
  return ("pytorch-fid" if classes == inception_net.PYTORCH_FID_CLASSES else "torchvision",
          classes)


def _load(item, what: str) -> tuple[dict, str]:
  """(state dict, label) from a path or a state dict."""
  if isinstance(item, (str, os.PathLike)):
    path = os.path.expanduser(os.fspath(item))
    if not os.path.exists(path):
      raise FileNotFoundError(f"{path}: no such file ({what})")
    return torch_pickle.state_dict(path), path
  if isinstance(item, dict):
    label = getattr(item, "path", None) or f"{what} (state dict)"
    return {k: np.asarray(v) for k, v in item.items()}, label
  raise ConversionError(f"{what}: expected a path or a state dict, got {type(item).__name__}")


def _as_list(files) -> list:
  return list(files) if isinstance(files, (list, tuple)) else [files]


def _import(net: _Net, states: list[dict], labels: list[str]) -> dict:
  rules = _rules(net.expected, net.names)
  used = [set() for _ in states]
  flat, missing, wrong = {}, [], []
  for r in rules:
    state, label = states[r.file], labels[r.file]
    present = [n for n in r.torch if n in state]
    absent = [n for n in r.torch if n not in state and n not in r.optional]
    used[r.file].update(present)
    if absent:
      missing += [f"{n} (for {r.flax[0].rsplit('/', 1)[0]})" for n in absent]
      continue
    want = r.to_torch([np.zeros(net.expected[k], np.float32) for k in r.flax])
    arrays = []
    for n, w in zip(r.torch, want):
      if n not in state:
        arrays.append(None)
        continue
      a = np.asarray(state[n])
      if a.shape != w.shape and n not in r.optional:
        wrong.append(f"{label}: {n} has shape {a.shape}; {net.label} needs {w.shape} "
                     f"(for {r.flax[0].rsplit('/', 1)[0]})")
      arrays.append(a)
    if not wrong:
      for k, a in zip(r.flax, r.to_flax(arrays)):
        flat[k] = np.asarray(a, np.float32)
  extra = [f"{labels[i]}: {n} {np.shape(s[n])}" for i, s in enumerate(states) for n in s
           if n not in used[i] and not any(re.search(p, n) for p in net.skipped)]
  problems = []
  if wrong:
    problems.append("wrong shapes:\n  " + "\n  ".join(wrong[:10]))
  if missing:
    problems.append(f"{len(missing)} tensors missing from {', '.join(labels)}, e.g.:\n  "
                    + "\n  ".join(missing[:10]))
  if extra:
    problems.append(f"{len(extra)} tensors with no place in {net.label}, e.g.:\n  "
                    + "\n  ".join(extra[:10]))
  if problems:
    raise ConversionError(f"{net.label} does not fit the file(s): " + "\n".join(problems))
  assert set(flat) == set(net.expected), sorted(set(net.expected) ^ set(flat))
  return unflatten(flat)


def from_torch(kind: str, files, config=None):
  """The Flax variables of `kind` from PyTorch state dicts (paths or dicts).

  `discriminators` takes one file per stage (netD0.pth, netD1.pth, ...) and
  returns a tuple of variables; `captioner` takes the CAPTION_CNN then the
  CAPTION_RNN state dict. `config` sizes the networks (not needed for the
  backbones resnet152, inception, fid_inception)."""
  items = _as_list(files)
  loaded = [_load(item, f"{kind} file {i}") for i, item in enumerate(items)]
  states, labels = [s for s, _ in loaded], [lb for _, lb in loaded]
  nets = _nets(kind, config, states)
  if kind == "discriminators":
    if len(states) != len(nets):
      raise ConversionError(f"discriminators: {len(states)} files for {len(nets)} stages "
                            f"(config.model.num_stages={len(nets)}): give netD0.pth .. "
                            f"netD{len(nets) - 1}.pth")
    return tuple(_import(n, [s], [lb]) for n, s, lb in zip(nets, states, labels))
  if len(states) != nets[0].files:
    raise ConversionError(f"{kind}: {len(states)} files given, {nets[0].files} expected"
                          + (" (the CAPTION_CNN then the CAPTION_RNN state dict)"
                             if kind == "captioner" else ""))
  return _import(nets[0], states, labels)


def _export(net: _Net, variables) -> list[dict]:
  flat = {k: np.asarray(v) for k, v in flatten(variables).items()}
  missing = sorted(set(net.expected) - set(flat))
  extra = sorted(set(flat) - set(net.expected))
  wrong = [f"{k} {flat[k].shape} (needs {net.expected[k]})" for k in net.expected
           if k in flat and tuple(flat[k].shape) != net.expected[k]]
  if missing or extra or wrong:
    raise ConversionError(f"variables do not fit {net.label}: missing {missing[:5]}, "
                          f"unexpected {extra[:5]}, wrong shapes {wrong[:5]}")
  states = [{} for _ in range(net.files)]
  for r in _rules(net.expected, net.names):
    for n, a in zip(r.torch, r.to_torch([flat[k].astype(np.float32) for k in r.flax])):
      states[r.file][n] = np.asarray(a, order="C")
  return states


def to_torch(kind: str, variables, config=None, path=None):
  """The inverse of `from_torch`: official-named state dict(s) of numpy arrays,
  written with `torch.save`'s zip format to `path` when given (a list of
  paths for discriminators and the captioner). Returns the state dict(s)."""
  if kind == "fid_inception":
    fc = flatten(variables).get("params/fc/kernel")
    state_hint = None if fc is None else {"fc.weight": np.zeros(np.shape(fc)[::-1])}
    nets = _nets(kind, config, [state_hint] if state_hint else None)
  else:
    nets = _nets(kind, config)
  if kind == "discriminators":
    variables = tuple(variables)
    if len(variables) != len(nets):
      raise ConversionError(f"discriminators: {len(variables)} variables for {len(nets)} "
                            f"stages")
    states = [_export(n, v)[0] for n, v in zip(nets, variables)]
  else:
    states = _export(nets[0], variables)
  if path is not None:
    paths = _as_list(path)
    if len(paths) != len(states):
      raise ConversionError(f"{kind}: {len(paths)} paths for {len(states)} files")
    for p, s in zip(paths, states):
      torch_save.save(s, p)
  return tuple(states) if kind == "discriminators" else (
      states if kind == "captioner" else states[0])
