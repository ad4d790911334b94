"""A trained model, read back from what the training program left behind.

A *location* is a workdir, a phase's checkpoint folder
(`<workdir>/checkpoints/gan`) or one checkpoint (`.../gan/4000`). The config
comes from the checkpoint itself (its `meta` item holds the config it was
trained with), so `generate` and `evaluate` need nothing but the location;
the vocabulary comes from `<workdir>/vocabulary.json`, written by `train.py`.
"""

import dataclasses
import json
import os
import re

import jax
import ml_collections

from mirrorgan_jax import factory, gan_state, parallel, pretrain_steps
from mirrorgan_jax.checkpointing import CheckpointError, PhaseCheckpoints
from mirrorgan_jax.data import sources
from mirrorgan_jax.data.vocab import Vocabulary

VOCABULARY_FILE = "vocabulary.json"


@dataclasses.dataclass(frozen=True)
class Checkpoint:
  workdir: str | None  # None when the location is not inside a workdir
  directory: str  # the phase's checkpoint folder
  step: int | None  # None: choose with `which`


def locate(path: str, phase: str) -> Checkpoint:
  """Parses a location (see the module doc) for `phase`. A checkpoint or
  folder of another phase inside a workdir leads to that workdir's `phase`."""
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no such workdir or checkpoint")
  inner = os.path.join(path, "checkpoints", phase)
  if os.path.isdir(inner):
    return Checkpoint(path, inner, None)
  name, step = os.path.basename(path), None
  if re.fullmatch(r"\d+", name) and os.path.isdir(path):
    path, step = os.path.dirname(path), int(name)
    name = os.path.basename(path)
  parent = os.path.dirname(path)
  if os.path.basename(parent) == "checkpoints":
    workdir = os.path.dirname(parent)
    if name == phase:
      return Checkpoint(workdir, path, step)
    return locate(workdir, phase)  # e.g. the damsm phase of a gan checkpoint's run
  if name == phase or step is not None:
    return Checkpoint(None, path, step)
  raise FileNotFoundError(_no_checkpoint(path, phase))


def _no_checkpoint(path: str, phase: str) -> str:
  return (f"{path}: not a workdir with checkpoints/{phase}, nor a {phase} checkpoint folder "
          f"or step; has the {phase} phase been trained there?")


# Fields added to the configs after checkpoints were first written, with the
# value every earlier checkpoint was trained with (the official one).
ADDED_FIELDS = {("text", "sentence_code"): "states",
                ("model", "image_subpixels"): 1, ("model", "masked_image_head"): False,
                ("loss", "negative_weight"): 0.0, ("loss", "negative_min_share"): 0.3,
                ("loss", "damsm_weight"): 0.0, ("loss", "edge_d_weight"): 0.0,
                ("loss", "edge_d_gain"): 30.0, ("gan", "ema_bn_batches"): 0,
                ("gan", "sample_z_scale"): 1.0, ("gan", "sample_ca_noise"): 1.0}


def config_from_meta(meta: dict) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(meta["config"])
  for (group, field), value in ADDED_FIELDS.items():
    if group in config and field not in config[group]:
      config[group][field] = value
  return config


def abstract_state(init, key, mesh):
  """The structure `init(key)` would give, replicated on `mesh`, for restoring."""
  shapes = jax.eval_shape(init, key)
  sharding = parallel.replicated(mesh)
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                      shapes)


def _state_init(phase: str, config, stages: int):
  if phase == "gan":
    c = ml_collections.ConfigDict(config.to_dict())
    c.model.num_stages = stages
    models = factory.create_models(c)
    return c, lambda k: gan_state.init_gan_state(models, c, k)
  models = factory.create_models(config)
  init = {"damsm": pretrain_steps.init_damsm_state,
          "stream": pretrain_steps.init_stream_state}[phase]
  return config, lambda k: init(models, config, k)


@dataclasses.dataclass(frozen=True)
class Restored:
  state: object
  config: ml_collections.ConfigDict  # with model.num_stages as trained
  step: int
  path: str
  meta: dict
  workdir: str | None


def restore(path: str, phase: str, *, which: str = "latest", mesh=None) -> Restored:
  """The state of `phase` at `path`: the given step, or the `latest` or the
  `best` (by the phase's evaluation metric) checkpoint of the folder."""
  if which not in ("latest", "best"):
    raise ValueError(f"which={which!r}: use 'latest' or 'best'")
  loc = locate(path, phase)
  mesh = mesh or parallel.make_mesh()
  ckpt = PhaseCheckpoints(loc.directory, async_save=False, writer=False)
  try:
    steps = ckpt.steps()
    if not steps:  # an empty folder says the same as a missing one
      raise FileNotFoundError(_no_checkpoint(loc.directory, phase))
    step = loc.step
    if step is None and which == "best":
      step = ckpt.best_step()
    if step is not None and step not in steps:
      raise CheckpointError(f"{ckpt.path(step)}: not a finished checkpoint "
                            f"(finished: {steps})")
    key = jax.random.key(0)

    def abstract_for(meta):
      config = config_from_meta(meta)
      _, init = _state_init(phase, config, meta.get("stages") or config.model.num_stages)
      return {"state": abstract_state(init, key, mesh),
              "key": jax.ShapeDtypeStruct(key.shape, key.dtype,
                                          sharding=parallel.replicated(mesh))}

    # The newest (no step named) falls back to an older one when damaged,
    # as training does; a step asked for by name or as "best" must restore.
    out = ckpt.restore(abstract_for, step=step, set_aside=False)
  finally:
    ckpt.close()
  config = config_from_meta(out.meta)
  if phase == "gan":
    config.model.num_stages = out.meta.get("stages") or config.model.num_stages
  return Restored(out.state["state"], config, out.step, out.path, out.meta, loc.workdir)


def save_vocabulary(workdir: str, vocab: Vocabulary) -> None:
  with open(os.path.join(workdir, VOCABULARY_FILE), "w", encoding="utf-8") as f:
    json.dump({"words": list(vocab.words)}, f)
    f.write("\n")


def load_vocabulary(workdir: str | None, config) -> Vocabulary:
  """The run's vocabulary: `<workdir>/vocabulary.json`, else the dataset's
  (rebuilt for shapes, read from the prepared TFDS data otherwise)."""
  if workdir is not None:
    path = os.path.join(workdir, VOCABULARY_FILE)
    if os.path.exists(path):
      try:
        with open(path, encoding="utf-8") as f:
          words = json.load(f)["words"]
        return Vocabulary(tuple(words))
      except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a vocabulary file ({e})") from e
  return sources.make_source(config, "test", 64).vocab
