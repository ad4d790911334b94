"""Sentences to images with a trained MirrorGAN, from Python or the shell.

Python (load once, then sample as often as you like):

    from mirrorgan_jax.generate import TextToImage
    t2i = TextToImage("runs/shapes")          # or a checkpoint: .../checkpoints/gan/4000
    images = t2i.sample(["a big red circle on the left"], seed=0)  # uint8 (1, 32, 32, 3)

Shell:

    python -m mirrorgan_jax.generate --workdir runs/shapes --captions FILE --out DIR \\
        [--seed 0] [--samples K] [--all-stages] [--attention]
    python -m mirrorgan_jax.generate --workdir runs/shapes --text "a small blue box" --out DIR

Images come from the EMA generator with BatchNorm running statistics. Caption
i, sample k is drawn with the key fold_in(fold_in(key(seed), i), k): the same
seed gives the same images whatever the batch size or number of devices.
"""

import argparse
import dataclasses
import json
import os
import sys
import warnings
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from mirrorgan_jax import factory, parallel, summaries, trained
from mirrorgan_jax.checkpointing import USER_ERRORS
from mirrorgan_jax.config_check import stage_sizes
from mirrorgan_jax.data.vocab import encode_texts
from mirrorgan_jax.sampling import (batched, example_keys, make_sampler, sampling_noise,
                                    sampling_params)


@dataclasses.dataclass(frozen=True)
class Samples:
  """K samples for each of N captions."""
  images: list  # per stage: uint8 (N, K, S, S, 3)
  # per refinement stage: float32 (N, K, T, h, h), T words used, h the side of
  # the feature map the stage attends over (its input: half its image side)
  attention: list
  words: list  # per caption: the words the model saw (unknown ones dropped)


_SAMPLING: dict = {}


def _sampling_programs(config):
  """(sample, its jitted form, the jitted last stage as uint8), once per
  `factory.program_config` in this process: another TextToImage of the same
  model (a second evaluation, a notebook) reuses the compiled programs."""
  pc = factory.program_config(config)
  key = pc.to_json_best_effort()
  if key not in _SAMPLING:
    sample = make_sampler(factory.create_models(config), pc)
    _SAMPLING[key] = (sample, jax.jit(sample),
                      jax.jit(lambda *args: summaries.to_uint8(sample(*args)[0][-1], jnp)))
  return _SAMPLING[key]


class TextToImage:
  """A trained generator, loaded once from a workdir or checkpoint location
  (see `mirrorgan_jax.trained`); `sample` and `generate` are jit-compiled,
  batched and sharded over `devices` (default: all local devices)."""

  def __init__(self, location: str, *, checkpoint: str = "latest", devices=None,
               batch_size: int | None = None, z_scale: float | None = None,
               ca_noise: float | None = None):
    self.mesh = parallel.make_mesh(devices if devices is not None else jax.local_devices())
    restored = trained.restore(location, "gan", which=checkpoint, mesh=self.mesh)
    self.config, self.step, self.path = restored.config, restored.step, restored.path
    # The sampling noise: the run's (gan.sample_z_scale, gan.sample_ca_noise) unless given.
    for name, value in (("z_scale", z_scale), ("ca_noise", ca_noise)):
      if value is not None:
        if not value >= 0:
          raise ValueError(f"{name} (--{name.replace('_', '-')}) = {value}: must be a "
                           f"number >= 0 (1: the official sampler)")
        self.config.gan[f"sample_{name}"] = float(value)
    self.vocab = trained.load_vocabulary(restored.workdir, self.config)
    params = sampling_params(restored.state)
    self.vocab.check_size(np.shape(params["text_encoder"]["embedding"]["embedding"])[0],
                          "the checkpoint's text encoder")
    # sample_fn: pure, for programs built on it (evaluate's measuring job).
    self.sample_fn, self._sampler, self._last_stage = _sampling_programs(self.config)
    self.params = params
    n = self.mesh.size
    self.batch_size = -(-(batch_size or self.config.batch_size) // n) * n
    self.sizes = stage_sizes(self.config)

  def sampling_noise(self) -> dict:
    """The scales of z and of conditioning augmentation's noise this model samples with."""
    z_scale, ca_noise = sampling_noise(self.config)
    return {"z_scale": z_scale, "ca_noise": ca_noise}

  def encode(self, texts: Sequence[str], names: Sequence[str] | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """(ids, lengths); unknown words are dropped with a warning naming them, a
    caption with no known word is an error quoting it (and `names[i]`, where
    caption i came from, e.g. "captions.txt:3")."""
    if isinstance(texts, str):
      raise TypeError("texts must be a sequence of captions, not one string")
    if not len(texts):
      raise ValueError("no captions given")
    return encode_texts(self.vocab, list(texts), self.config.text.words_num, names)

  def generate(self, texts: Sequence[str], seed: int = 0, samples: int = 1,
               names: Sequence[str] | None = None) -> Samples:
    """Every stage's images and every refinement stage's word attention."""
    if samples < 1:
      raise ValueError(f"samples={samples}: must be at least 1")
    ids, lens = self.encode(texts, names)
    n = len(ids)
    rows = np.repeat(np.arange(n), samples)  # caption of each row
    draws = np.tile(np.arange(samples), n)  # sample index of each row
    keys = example_keys(jax.random.key(seed), rows, draws)
    chunks = list(batched(self._sampler, self.params, self.mesh, self.batch_size,
                          ids[rows], lens[rows], keys))
    per_row = lambda i, s: np.concatenate([c[i][s] for c in chunks])  # noqa: E731
    words = [self.vocab.decode(row[:length]).split() for row, length in zip(ids, lens)]
    t = max(len(w) for w in words)
    images = [summaries.to_uint8(per_row(0, s)).reshape((n, samples) + (self.sizes[s],) * 2 + (3,))
              for s in range(len(self.sizes))]
    attention = [per_row(1, a).reshape((n, samples) + chunks[0][1][a].shape[1:])[:, :, :t]
                 for a in range(len(chunks[0][1]))]
    return Samples(images=images, attention=attention, words=words)

  def last_stage_images(self, ids, lens, keys):
    """uint8 last-stage images for encoded captions and their keys, in
    batches (a generator: evaluation never holds 30,000 images at once)."""
    yield from batched(self._last_stage, self.params, self.mesh, self.batch_size,
                       np.asarray(ids), np.asarray(lens), keys)

  def sample(self, texts: Sequence[str], seed: int = 0) -> np.ndarray:
    """uint8 (N, H, W, 3): one image per caption at the last stage's size (the
    images `generate(texts, seed)` gives as sample 0)."""
    ids, lens = self.encode(texts)
    keys = example_keys(jax.random.key(seed), np.arange(len(ids)))
    return np.concatenate(list(self.last_stage_images(ids, lens, keys)))


def read_captions(path: str) -> list[str]:
  """One caption per line; trailing blank lines are ignored, a blank line
  before the last caption is an error naming its line."""
  try:
    with open(path, encoding="utf-8") as f:
      lines = f.read().splitlines()
  except UnicodeDecodeError as e:
    raise ValueError(f"{path}: not UTF-8 text ({e})") from e
  while lines and not lines[-1].strip():
    lines.pop()
  for number, line in enumerate(lines, 1):
    if not line.strip():
      raise ValueError(f"{path}:{number}: empty caption (one caption per line)")
  if not lines:
    raise ValueError(f"{path}: no captions")
  return [line.strip() for line in lines]


def write_samples(out: str, texts: Sequence[str], result: Samples, *,
                  all_stages: bool = False, attention: bool = False,
                  min_side: int = summaries.VIEW_MIN_SIDE) -> list[str]:
  """PNGs as the CLI documents them; returns the paths written.

  The samples (<n>.png, <n>_stage<s>.png) are the model's pixels at its
  resolution: what evaluation reads. The views for people (<n>_stages.png,
  every stage side by side; <n>_attention[_stage<s>].png) are scaled to at
  least `min_side` pixels an image (nearest neighbour, integer factor) with
  the caption beside them, drawn by the functions the training samples use."""
  os.makedirs(out, exist_ok=True)
  n, k = result.images[-1].shape[:2]
  written = []

  def save(array, name):
    path = os.path.join(out, name)
    Image.fromarray(array).save(path)
    written.append(path)

  refinements = len(result.attention)
  first_refined = len(result.images) - refinements
  for i in range(n):
    for j in range(k):
      stem = f"{i:06d}" if k == 1 else f"{i:06d}_{j}"
      save(result.images[-1][i, j], f"{stem}.png")
      if all_stages:
        for s, stage in enumerate(result.images):
          save(stage[i, j], f"{stem}_stage{s}.png")
        save(summaries.image_grid([[stage[i, j] for stage in result.images]], [texts[i]],
                                  min_side=min_side), f"{stem}_stages.png")
      if attention and refinements:
        words = result.words[i]
        shown = range(refinements) if all_stages else [refinements - 1]
        for a in shown:
          s = first_refined + a
          overlay = summaries.attention_overlay(
              result.images[s][i, j], result.attention[a][i, j, :len(words)], words, texts[i],
              min_side=min_side)
          suffix = f"_attention_stage{s}" if all_stages else "_attention"
          save(overlay, f"{stem}{suffix}.png")
  with open(os.path.join(out, "captions.txt"), "w", encoding="utf-8") as f:
    for i, (text, words) in enumerate(zip(texts, result.words)):
      f.write(f"{i:06d}\t{text}\t{' '.join(words)}\n")
  return written


def add_noise_arguments(parser) -> None:
  """--z-scale and --ca-noise, for generate and evaluate."""
  parser.add_argument("--z-scale", type=float, default=None,
                      help="z ~ N(0, I) scaled by this (default: the run's "
                           "config.gan.sample_z_scale; 1 official)")
  parser.add_argument("--ca-noise", type=float, default=None,
                      help="conditioning augmentation's noise scaled by this, 0 for its mean "
                           "(default: the run's config.gan.sample_ca_noise; 1 official)")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m mirrorgan_jax.generate", description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True,
                      help="a training workdir, its checkpoints/gan folder, or one checkpoint")
  parser.add_argument("--checkpoint", default="latest", choices=("latest", "best"),
                      help="which checkpoint of the folder (ignored for a checkpoint path)")
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--captions", help="a text file, one caption per line")
  source.add_argument("--text", action="append", help="a caption (repeatable)")
  parser.add_argument("--out", required=True, help="folder for the PNGs")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--samples", type=int, default=1, help="images per caption")
  parser.add_argument("--all-stages", action="store_true",
                      help="also write every stage's image (<n>_stage<s>.png) and a view of "
                           "them side by side, enlarged, with the caption (<n>_stages.png)")
  parser.add_argument("--attention", action="store_true",
                      help="also write word-attention maps, enlarged, with the caption "
                           "(<n>_attention.png)")
  parser.add_argument("--batch-size", type=int, default=None)
  add_noise_arguments(parser)
  args = parser.parse_args(argv)
  # Arguments first: nothing is sampled for an output that cannot be written.
  bad = [f"{name}={value}: must be at least 1" for name, value in (
      ("--samples", args.samples), ("--batch-size", args.batch_size))
         if value is not None and value < 1]
  if os.path.exists(args.out) and not os.path.isdir(args.out):
    bad.append(f"--out {args.out}: is a file, not a folder")
  if bad:
    print("error: " + "; ".join(bad), file=sys.stderr)
    return 2
  try:
    if args.captions:
      texts = read_captions(args.captions)
      names = [f"{args.captions}:{n}" for n in range(1, len(texts) + 1)]
    else:
      texts, names = args.text, [f"--text {n}" for n in range(1, len(args.text) + 1)]
    model = TextToImage(args.workdir, checkpoint=args.checkpoint, batch_size=args.batch_size,
                        z_scale=args.z_scale, ca_noise=args.ca_noise)
    with warnings.catch_warnings():
      warnings.simplefilter("always")
      warnings.showwarning = lambda message, *_, **__: print(f"warning: {message}",
                                                             file=sys.stderr)
      result = model.generate(texts, args.seed, args.samples, names)
  except USER_ERRORS as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  written = write_samples(args.out, texts, result, all_stages=args.all_stages,
                          attention=args.attention)
  with open(os.path.join(args.out, "generate.json"), "w", encoding="utf-8") as f:
    json.dump({"checkpoint": model.path, "step": model.step, "seed": args.seed,
               "samples": args.samples, "captions": len(texts),
               "sampling": model.sampling_noise()}, f, indent=2)
  print(f"{len(written)} images from {model.path} (step {model.step}) in {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
