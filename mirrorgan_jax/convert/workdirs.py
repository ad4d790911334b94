"""Converted networks as the checkpoints the programs read, and back.

A converted phase is an ordinary checkpoint of that phase in a workdir
(`<out>/checkpoints/<phase>/<step>`, the config in its meta, fresh optimizer
state, `converted_from` naming the files), so `config.damsm.weights=<out>`,
`config.stream.weights=<out>`, `train.py --workdir <out>`, `generate --workdir
<out>` and `evaluate --workdir <out>` take it as it is:

  damsm           RNN_ENCODER + CNN_ENCODER (+ captions.pickle's vocabulary):
                  checkpoints/damsm, complete, and vocabulary.json
  stream          CAPTION_CNN + CAPTION_RNN: checkpoints/stream, complete
  generator       G_NET (the official file holds the EMA weights): a gan checkpoint
                  with the text encoder of <out>'s damsm phase (required) and the
                  captioner of its stream phase (when there is none, the checkpoint
                  samples but training from it is refused)
  discriminators  D_NET64/128/256: into <out>'s newest gan checkpoint
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from mirrorgan_jax import factory, gan_state, param_groups, pretrain_steps, trained, trainer
from mirrorgan_jax.checkpointing import CheckpointError, PhaseCheckpoints
from mirrorgan_jax.gan_state import GANState, NetState
from mirrorgan_jax.metrics import inception_net



def file_label(path) -> str:
  """`name (sha256 0123456789ab)`: which file a network came from."""
  if not isinstance(path, (str, os.PathLike)):
    return "a state dict"
  return f"{os.path.basename(os.fspath(path))} (sha256 {inception_net.file_digest(path)})"


def _device(tree):
  return jax.tree.map(jnp.asarray, tree)


def _save(out: str, phase: str, config, state, step: int, complete: bool,
          converted_from: list, **extra) -> str:
  directory = os.path.join(out, "checkpoints", phase)
  ckpt = PhaseCheckpoints(directory, config.train.keep_latest, async_save=False)
  try:
    if step in ckpt.steps():
      ckpt.manager.delete(step)
    # The run's key of this phase, as train.py makes it.
    key = jax.random.fold_in(jax.random.key(config.seed), trainer.PHASES.index(phase))
    meta = {"phase": phase, "iteration": step, "stages": config.model.num_stages if
            phase == "gan" else 0, "complete": complete, "metric": None, "metrics": {},
            "config": json.loads(config.to_json_best_effort()),
            "converted_from": list(converted_from), **extra}
    ckpt.save(step, {"state": _device(state), "key": key}, meta)
    ckpt.wait()
  finally:
    ckpt.close()
  return ckpt.path(step)


def _refuse_existing(out: str, phase: str) -> None:
  directory = os.path.join(out, "checkpoints", phase)
  if os.path.isdir(directory) and os.listdir(directory):
    raise FileExistsError(f"{directory}: already holds {phase} checkpoints; convert into "
                          f"another --out or remove them")


def write_damsm(out: str, config, text_vars, image_vars, vocab, sources) -> str:
  """The damsm phase, complete: what config.damsm.weights and evaluate's
  --damsm-weights read; vocabulary.json beside it."""
  _refuse_existing(out, "damsm")
  factory.create_models(config)  # validates the config
  text_tx, image_tx = pretrain_steps.damsm_optimizers(config)
  text = text_vars["params"]
  image_params, image_stats = image_vars["params"], image_vars.get("batch_stats", {})
  trained_part, _ = param_groups.split(
      image_params, pretrain_steps.FROZEN_IMAGE_ENCODER[config.image_encoder.backbone])
  state = pretrain_steps.DamsmState(
      step=jnp.asarray(config.damsm.num_steps, jnp.int32),
      text=NetState(text, {}, text_tx.init(_device(text))),
      image=NetState(image_params, image_stats, image_tx.init(_device(trained_part))))
  os.makedirs(out, exist_ok=True)
  trained.save_vocabulary(out, vocab)
  return _save(out, "damsm", config, state, config.damsm.num_steps, True, sources)


def write_stream(out: str, config, captioner_vars, sources) -> str:
  """The stream phase, complete: what config.stream.weights reads."""
  _refuse_existing(out, "stream")
  params, stats = captioner_vars["params"], captioner_vars["batch_stats"]
  trained_part, _ = pretrain_steps._split_captioner(  # pylint: disable=protected-access
      params, pretrain_steps.FROZEN_CAPTION_ENCODER[config.stream.backbone])
  state = pretrain_steps.StreamState(
      jnp.asarray(config.stream.num_steps, jnp.int32),
      NetState(params, stats, pretrain_steps.stream_optimizer(config).init(
          _device(trained_part))))
  return _save(out, "stream", config, state, config.stream.num_steps, True, sources)


def _fresh_discriminators(models, config) -> tuple:
  x = gan_state.example_inputs(config)
  out = []
  for i, (d, img) in enumerate(zip(models.discriminators, x["images"])):
    key = jax.random.fold_in(jax.random.key(config.seed), 100 + i)
    variables = jax.jit(d.init)(key, img, x["sentence"])
    out.append(variables)
  return tuple(out)


def _phase_state(out: str, phase: str):
  """The newest state of `phase` in `out`, or None when there is none."""
  if not os.path.isdir(os.path.join(out, "checkpoints", phase)):
    return None
  try:
    return trained.restore(out, phase)
  except CheckpointError:
    return None


def write_generator(out: str, config, g_vars, sources, step: int = 0) -> str:
  """A gan checkpoint at `step` with G (and its EMA) from the file."""
  models = factory.create_models(config)
  damsm = _phase_state(out, "damsm")
  if damsm is None:
    raise FileNotFoundError(
        f"{out}: no damsm phase to take the text encoder from: convert the DAMSM encoders "
        f"into it first (python -m mirrorgan_jax.convert damsm TEXT.pth IMAGE.pth --vocab "
        f"captions.pickle --out {out})")
  stream = _phase_state(out, "stream")
  extra = {}
  if stream is not None:
    stream_vars = {"params": stream.state.net.params, "batch_stats": stream.state.net.batch_stats}
  else:  # sampling needs no captioner; training from this checkpoint is refused
    x = gan_state.example_inputs(config)
    shapes = jax.eval_shape(models.captioner.init, jax.random.key(0), x["images"][-1],
                            x["captions"])
    stream_vars = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    extra["untrained_stream"] = True
  previous = _phase_state(out, "gan")
  edge_d = gan_state.init_edge_d(models, config, jax.random.key(config.seed))
  if previous is not None and previous.config.model.num_stages == config.model.num_stages:
    ds = previous.state.d
    if bool(previous.state.edge_d) == bool(edge_d):  # the same critics: keep them
      edge_d = previous.state.edge_d
  else:
    ds = tuple(NetState(v["params"], v.get("batch_stats", {}), models.d_tx.init(v["params"]))
               for v in _fresh_discriminators(models, config))
  params = _device(g_vars["params"])
  state = GANState(step=jnp.asarray(step, jnp.int32),
                   g=NetState(params, g_vars["batch_stats"], models.g_tx.init(params)),
                   g_ema=params, d=ds, text_encoder=damsm.state.text.params,
                   stream=stream_vars, image_encoder=gan_state.damsm_image_variables(
                       config, damsm.state),
                   # The file's statistics until a GAN phase recomputes them.
                   g_ema_stats=g_vars["batch_stats"] if gan_state.uses_ema_stats(config) else {},
                   edge_d=edge_d)
  return _save(out, "gan", config, state, step, False, sources, **extra)


def write_discriminators(out: str, config, d_vars, sources) -> str:
  """The newest gan checkpoint of `out` with its discriminators from the files."""
  previous = _phase_state(out, "gan")
  if previous is None:
    raise FileNotFoundError(f"{out}: no gan checkpoint to put the discriminators in: "
                            f"convert the generator into it first")
  models = factory.create_models(previous.config)
  if len(d_vars) != len(previous.state.d):
    raise ValueError(f"{len(d_vars)} discriminators for a {len(previous.state.d)}-stage "
                     f"gan checkpoint")
  for i, (v, d) in enumerate(zip(d_vars, previous.state.d)):
    want = jax.tree.map(np.shape, {"params": d.params, "batch_stats": d.batch_stats})
    if jax.tree.map(np.shape, dict(v)) != want:
      raise ValueError(f"netD{i}: its shapes differ from the discriminators of {previous.path} "
                       f"(convert with the config the generator was converted with)")
  ds = tuple(NetState(_device(v["params"]), v["batch_stats"],
                      models.d_tx.init(_device(v["params"]))) for v in d_vars)
  state = previous.state.replace(d=ds)
  meta = previous.meta
  extra = {k: meta[k] for k in ("untrained_stream",) if k in meta}
  return _save(out, "gan", previous.config, state, previous.step, bool(meta.get("complete")),
               list(meta.get("converted_from", [])) + list(sources), **extra)


def read_variables(location: str, kind: str, which: str = "latest"):
  """(variables, config, checkpoint path) of `kind` from a trained or
  converted phase: generator (EMA parameters with the live BatchNorm
  statistics, as the official netG files), discriminators (a tuple),
  text_encoder, image_encoder, captioner."""
  phase = {"generator": "gan", "discriminators": "gan", "text_encoder": "damsm",
           "image_encoder": "damsm", "captioner": "stream"}[kind]
  r = trained.restore(location, phase, which=which)
  s = jax.device_get(r.state)
  if kind == "generator":
    v = {"params": s.g_ema, "batch_stats": s.g.batch_stats}
  elif kind == "discriminators":
    v = tuple({"params": d.params, "batch_stats": d.batch_stats} for d in s.d)
  elif kind == "text_encoder":
    v = {"params": s.text.params}
  elif kind == "image_encoder":
    v = {"params": s.image.params, "batch_stats": s.image.batch_stats}
  else:
    v = {"params": s.net.params, "batch_stats": s.net.batch_stats}
  return jax.tree.map(np.asarray, v), r.config, r.path
