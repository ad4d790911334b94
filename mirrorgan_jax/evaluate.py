"""How good is a trained model: IS, FID, R-precision and (shapes) alignment.

    python -m mirrorgan_jax.evaluate --workdir W --metrics is,fid,rprecision,alignment \\
        [--num-images 30000] [--seed 0] [--inception-weights F.npz] [--fid-stats F.npz]

writes `<workdir>/eval/<step>.json` and prints a table. The protocol is the
community one of reference section 10: images for test captions (image i mod
|test|, one caption drawn per image and pass, seeded), the EMA generator's last
stage; IS over 10 splits; FID of 2048-d pool features against the real test
images' statistics (computed once and cached in `<workdir>/eval/`, or read
from pytorch-fid's .npz); R-precision with the run's DAMSM encoders, the true
caption against 99 of other classes. Without Inception weights, IS and FID
run on random weights and say UNCALIBRATED on every line.
"""

import argparse
import dataclasses
import functools
import json
import logging
import os
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from mirrorgan_jax import factory, host_memory, parallel, summaries, trained
from mirrorgan_jax.checkpointing import USER_ERRORS
from mirrorgan_jax.config_check import stage_sizes
from mirrorgan_jax.data import image_ops, shapes_scorer, sources
from mirrorgan_jax.data.vocab import encode_caption
from mirrorgan_jax.generate import TextToImage, add_noise_arguments
from mirrorgan_jax.metrics import fid, inception_net, inception_score, r_precision
from mirrorgan_jax.sampling import batched, example_keys, local_replica

METRICS = ("is", "fid", "rprecision", "alignment")
ALIGNMENT_SPLITS = ("test", "test_heldout")
# (split, paraphrased): each split's captions, then its scenes in the paraphrase templates
ALIGNMENT_ROWS = tuple((s, p) for p in (False, True) for s in ALIGNMENT_SPLITS)
ALIGNMENT_CAPTIONS = 1000  # per split, the first ones (as the training report)


@dataclasses.dataclass(frozen=True)
class Captions:
  """Encoded captions of a split and where each came from."""
  ids: np.ndarray  # (N, T) int32
  lens: np.ndarray  # (N,)
  images: np.ndarray  # (N,) image index in the split
  caption_index: np.ndarray  # (N,) which caption of that image
  texts: list


def _encode(source, pairs, words_num, paraphrased: bool = False) -> Captions:
  ids, lens, texts = [], [], []
  caption_ids, captions = ((source.paraphrase_ids, source.paraphrases) if paraphrased
                           else (source.caption_ids, source.captions))
  for index, k in pairs:
    c, n = encode_caption(caption_ids(index)[k], words_num)
    ids.append(c)
    lens.append(n)
    texts.append(captions(index)[k])
  return Captions(np.stack(ids), np.asarray(lens, np.int32),
                  np.asarray([i for i, _ in pairs]), np.asarray([k for _, k in pairs]), texts)


def protocol_captions(source, num_images: int, seed: int, words_num: int) -> Captions:
  """Image n % |split| with one caption drawn uniformly per image and pass."""
  rng = np.random.default_rng([seed, 1])
  per = source.captions_per_image
  pairs = [(n % len(source), int(rng.integers(per))) for n in range(num_images)]
  return _encode(source, pairs, words_num)


def drawn_captions(source, count: int, seed: int, words_num: int) -> Captions:
  """`count` captions, each of its own image while the split has enough
  (then round again), images and captions drawn by a generator seeded with `seed`."""
  rng = np.random.default_rng([seed, 2])
  images = np.resize(rng.permutation(len(source)), count)
  return _encode(source, [(int(i), int(rng.integers(source.captions_per_image)))
                          for i in images], words_num)


def first_captions(source, count: int, words_num: int, paraphrased: bool = False) -> Captions:
  """The first `count` captions, image-major (the training report's order);
  `paraphrased` (shapes): the same images' scenes in the paraphrase templates."""
  per = source.captions_per_image
  count = min(count, len(source) * per)
  return _encode(source, [divmod(n, per) for n in range(count)], words_num, paraphrased)


def real_images(source, config):
  """The split's images at the last stage size, once each, uint8, in order."""
  sizes = stage_sizes(config)
  for index in range(len(source)):
    ex = source.example(index)
    if source.photographs:
      yield image_ops.official_stages(ex.image, ex.bbox, sizes, None)[-1]
    else:
      yield image_ops.stage_images(ex.picture(), sizes)[-1]


def _chunks(iterable, size):
  chunk = []
  for x in iterable:
    chunk.append(x)
    if len(chunk) == size:
      yield np.stack(chunk)
      chunk = []
  if chunk:
    yield np.stack(chunk)


def real_statistics(net, source, config, cache_dir: str | None, batch: int = 50):
  """(mu, sigma, path) of the real images' pool features, cached by
  dataset, split, size and Inception weights."""
  tag = "random" if not net.calibrated else net.label.rsplit("sha256 ", 1)[-1].rstrip(")")
  name = (f"fid_stats_{config.dataset}_{source.split}_{len(source)}_"
          f"{stage_sizes(config)[-1]}px_{net.image_size}_{tag}.npz")
  path = os.path.join(cache_dir, name) if cache_dir else None
  if path and os.path.exists(path):
    mu, sigma = fid.load_statistics(path)
    return mu, sigma, path
  feats = np.concatenate([net(chunk, batch)[0] for chunk in _chunks(real_images(source, config),
                                                                    batch)])
  mu, sigma = fid.statistics(feats)
  if path:
    fid.save_statistics(path, mu, sigma, count=len(feats))
  return mu, sigma, path


class _DamsmCodes:
  """DAMSM encoders: sentence codes of captions, global codes of images. The
  run's own, or `weights` (a workdir or damsm checkpoint, e.g. AttnGAN's
  released encoders converted by `python -m mirrorgan_jax.convert damsm`)."""

  def __init__(self, location, t2i: TextToImage, weights: str | None = None):
    if weights:
      restored = trained.restore(weights, "damsm", mesh=t2i.mesh)
    else:
      try:
        restored = trained.restore(location, "damsm", mesh=t2i.mesh)
      except FileNotFoundError:
        if not t2i.config.damsm.weights:
          raise FileNotFoundError(
              f"R-precision needs the DAMSM encoders: no checkpoints/damsm under {location}, "
              f"config.damsm.weights is empty and --damsm-weights was not given") from None
        restored = trained.restore(t2i.config.damsm.weights, "damsm", mesh=t2i.mesh)
    t2i.vocab.check_size(np.shape(restored.state.text.params["embedding"]["embedding"])[0],
                         f"the DAMSM text encoder of {restored.path}")
    if restored.workdir and os.path.exists(os.path.join(restored.workdir,
                                                         trained.VOCABULARY_FILE)):
      theirs = trained.load_vocabulary(restored.workdir, restored.config)
      if theirs.words != t2i.vocab.words:
        raise ValueError(f"{restored.workdir}/{trained.VOCABULARY_FILE}: the DAMSM encoders' "
                         f"vocabulary differs from the run's (same size, other word ids)")
    self.origin = restored.meta.get("converted_from")
    models = factory.create_models(t2i.config)
    state = restored.state
    self.path = restored.path
    # Parameters are arguments, not constants baked into the compiled programs.
    self._text_params = state.text.params
    self.image_vars = {"params": state.image.params, "batch_stats": state.image.batch_stats}
    self._text = jax.jit(lambda params, ids, lens: models.text_encoder.apply(
        {"params": params}, ids, lens)[1])
    self.image_codes = damsm_image_codes(models.image_encoder)

  def sentences(self, ids, lens, batch: int = 256) -> np.ndarray:
    return np.concatenate([
        np.asarray(self._text(self._text_params, ids[i:i + batch], lens[i:i + batch]))
        for i in range(0, len(ids), batch)])


@functools.lru_cache(maxsize=None)
def damsm_image_codes(image_encoder) -> Callable:
  """`codes(image encoder variables, uint8 images) -> (N, D)` global codes
  (one function per encoder module, so that measuring jobs are shared)."""
  return lambda variables, images: image_encoder.apply(
      variables, images.astype(jnp.float32) / 127.5 - 1.0, train=False)[1]


@functools.lru_cache(maxsize=None)
def measuring_job(sample: Callable, inception: Callable | None = None,
                  codes: Callable | None = None) -> Callable:
  """One compiled program per batch: the sampler's last stage, made uint8 as
  a saved image is, then Inception's pool features and logits and the DAMSM
  image codes. Only features leave the devices (a 256 px image is 196 KB, its
  features 13 KB). `fn((sampling params, Inception variables, DAMSM image
  variables), ids, lens, keys) -> dict`, for `sampling.batched`; one per
  (sampler, Inception, encoder) in this process."""

  def job(params, ids, lens, keys):
    sampling, inception_vars, image_vars = params
    images = summaries.to_uint8(sample(sampling, ids, lens, keys)[0][-1], jnp)
    out = {}
    if inception is not None:
      out["pool"], out["logits"] = inception(inception_vars, images)
    if codes is not None:
      out["codes"] = codes(image_vars, images)
    return out

  return jax.jit(job)


def alignment(t2i: TextToImage, config, seed: int) -> dict:
  """Per-attribute accuracy of the shapes scorer on the first 1000 captions of
  `test` and `test_heldout`, and on the same scenes in phrasings the dataset
  never uses (`<split>_paraphrased`: `shapes.paraphrases`)."""
  out = {}
  for split, paraphrased in ALIGNMENT_ROWS:
    source = sources.make_source(config, split, stage_sizes(config)[-1])
    caps = first_captions(source, ALIGNMENT_CAPTIONS, config.text.words_num, paraphrased)
    keys = example_keys(jax.random.key(seed), np.arange(len(caps.ids)))
    images = np.concatenate(list(t2i.last_stage_images(caps.ids, caps.lens, keys)))
    out[split + "_paraphrased" * paraphrased] = shapes_scorer.score(images, caps.texts)
  return out


class TrainingFid:
  """FID of the EMA generator on `config.eval.train_fid_images` test captions
  (seed 0), for ranking checkpoints during training. Every process computes
  the same figure on its own devices (the state is replicated); only process
  0 writes the real statistics' cache."""

  def __init__(self, config, workdir: str, is_main: bool):
    ev = config.eval
    self.mesh = parallel.make_mesh(jax.local_devices())
    self.net = inception_net.load(ev.inception_weights, image_size=ev.inception_image_size,
                                  mesh=self.mesh)
    self.source = sources.make_source(config, "test", stage_sizes(config)[-1])
    self.caps = protocol_captions(self.source, ev.train_fid_images, 0, config.text.words_num)
    self.keys = example_keys(jax.random.key(0), np.arange(ev.train_fid_images))
    self.batch = -(-config.batch_size // self.mesh.size) * self.mesh.size
    self.config, self.cache = config, os.path.join(workdir, "eval") if is_main else None
    self.real = None
    self.is_main = is_main
    if not self.net.calibrated and is_main:
      logging.warning("the FID ranking checkpoints is %s: set config.eval.inception_weights "
                      "(python -m mirrorgan_jax.convert fid_inception)", inception_net.UNCALIBRATED)

  def __call__(self, sampler, params) -> float:
    if self.real is None:
      if self.config.eval.fid_stats:
        self.real = fid.load_statistics(self.config.eval.fid_stats)
      else:
        self.real = real_statistics(self.net, self.source, self.config, self.cache)[:2]
    feats = np.concatenate([
        out["pool"] for out in batched(
            measuring_job(sampler, self.net.forward), (local_replica(params, self.mesh), self.net.variables, None),
            self.mesh, self.batch, self.caps.ids, self.caps.lens, self.keys)])
    value = fid.frechet_distance(*fid.statistics(feats), *self.real)
    if not self.net.calibrated and self.is_main:
      logging.warning("checkpoint FID %.3f: %s", value, inception_net.UNCALIBRATED)
    return value


def evaluate(location: str, metrics=METRICS, *, num_images: int = 30_000, seed: int = 0,
             checkpoint: str = "latest", inception_weights: str | None = None,
             fid_stats: str | None = None, data_dir: str | None = None,
             batch_size: int | None = None, damsm_weights: str | None = None,
             z_scale: float | None = None, ca_noise: float | None = None) -> dict:
  """Computes `metrics` for the model at `location`; returns the report dict
  (also written to <workdir>/eval/<step>.json when there is a workdir).
  `z_scale` and `ca_noise` override the run's sampling noise (TextToImage)."""
  metrics = tuple(metrics)
  unknown = sorted(set(metrics) - set(METRICS))
  if unknown or not metrics:
    raise ValueError(f"--metrics: unknown {unknown}; choose from {','.join(METRICS)}")
  if num_images < 10 and {"is", "fid", "rprecision"} & set(metrics):
    raise ValueError(f"--num-images={num_images}: IS and R-precision use 10 splits; "
                     f"give at least 10 (the protocol uses 30000)")
  t2i = TextToImage(location, checkpoint=checkpoint, batch_size=batch_size, z_scale=z_scale,
                    ca_noise=ca_noise)
  config = t2i.config
  if data_dir:
    config.data.data_dir = data_dir
  ev = config.get("eval", {})
  weights = inception_weights if inception_weights is not None else ev.get("inception_weights", "")
  report = {"checkpoint": t2i.path, "step": t2i.step, "seed": seed, "dataset": config.dataset,
            "sampling": t2i.sampling_noise(), "metrics": {}}
  eval_dir = None
  workdir = trained.locate(location, "gan").workdir
  if workdir:
    eval_dir = os.path.join(workdir, "eval")
  started = time.time()
  if "alignment" in metrics:
    if config.dataset != "shapes":
      raise ValueError("alignment is the shapes scorer: only for config.dataset = shapes")
    report["metrics"]["alignment"] = alignment(t2i, config, seed)
  needs_images = [m for m in ("is", "fid", "rprecision") if m in metrics]
  if needs_images:
    source = sources.make_source(config, "test", stage_sizes(config)[-1])
    caps = protocol_captions(source, num_images, seed, config.text.words_num)
    net = (inception_net.load(weights, image_size=ev.get("inception_image_size", 299),
                              mesh=t2i.mesh)
           if {"is", "fid"} & set(metrics) else None)
    damsm = _DamsmCodes(location, t2i, damsm_weights) if "rprecision" in metrics else None
    keys = example_keys(jax.random.key(seed), np.arange(num_images))
    job = measuring_job(t2i.sample_fn, net.forward if net else None,
                        damsm.image_codes if damsm else None)
    params = (t2i.params, net.variables if net else None, damsm.image_vars if damsm else None)
    out = list(batched(job, params, t2i.mesh, t2i.batch_size, caps.ids, caps.lens, keys))
    features = {k: np.concatenate([o[k] for o in out]) for k in out[0]}
    if "is" in metrics:
      logits = features["logits"].astype(np.float64)
      if logits.shape[1] == 0:
        raise ValueError("IS needs class logits: these Inception weights have no fc layer")
      mean, std = inception_score.inception_score(logits)
      report["metrics"]["is"] = {"mean": mean, "std": std, "splits": 10,
                                 "images": num_images, "network": net.label}
    if "fid" in metrics:
      if fid_stats:
        mu_r, sigma_r = fid.load_statistics(fid_stats)
        stats_path = os.path.abspath(fid_stats)
      else:
        mu_r, sigma_r, stats_path = real_statistics(net, source, config, eval_dir)
      mu_g, sigma_g = fid.statistics(features["pool"].astype(np.float64))
      report["metrics"]["fid"] = {
          "value": fid.frechet_distance(mu_g, sigma_g, mu_r, sigma_r), "images": num_images,
          "real_statistics": stats_path or f"{config.dataset} test split (not cached)",
          "network": net.label}
    if damsm is not None:
      report["metrics"]["rprecision"] = _r_precision(damsm, source, caps, features["codes"],
                                                     seed, config.text.words_num)
  report["seconds"] = round(time.time() - started, 1)
  if eval_dir and jax.process_index() == 0:
    os.makedirs(eval_dir, exist_ok=True)
    path = os.path.join(eval_dir, f"{t2i.step}.json")
    with open(path, "w", encoding="utf-8") as f:
      json.dump(report, f, indent=2)
      f.write("\n")
    report["path"] = path
  return report


def _r_precision(damsm, source, caps: Captions, image_codes, seed: int, words_num: int) -> dict:
  per = source.captions_per_image
  everything = first_captions(source, len(source) * per, words_num)  # row = index * per + k
  sentence = damsm.sentences(everything.ids, everything.lens)
  classes = np.repeat([source.class_id(i) for i in range(len(source))], per)
  rng = np.random.default_rng([seed, 2])
  true_rows = caps.images * per + caps.caption_index
  negatives = r_precision.draw_negatives(classes, true_rows, rng)
  candidates = sentence[np.concatenate([true_rows[:, None], negatives], axis=1)]
  hits = r_precision.cosine_hits(image_codes, candidates)
  mean, std = r_precision.r_precision(hits, rng)
  return {"mean": mean, "std": std, "folds": 10, "candidates": r_precision.CANDIDATES,
          "images": len(hits), "encoders": damsm.path,
          **({"encoders_converted_from": damsm.origin} if damsm.origin else {})}


def format_table(report: dict) -> str:
  lines = [f"checkpoint {report['checkpoint']} (step {report['step']}), seed {report['seed']}"]
  noise = report.get("sampling", {})
  if any(v != 1.0 for v in noise.values()):  # a report of the official sampler says nothing
    lines.append(f"sampling noise scaled: z {noise['z_scale']:g}, "
                 f"conditioning augmentation {noise['ca_noise']:g} (official: 1, 1)")
  m = report["metrics"]
  flag = lambda r: "" if "UNCALIBRATED" not in r["network"] else f"  {inception_net.UNCALIBRATED}"  # noqa: E731
  if "is" in m:
    lines.append(f"IS           {m['is']['mean']:.3f} ± {m['is']['std']:.3f}  "
                 f"({m['is']['images']} images, 10 splits){flag(m['is'])}")
  if "fid" in m:
    lines.append(f"FID          {m['fid']['value']:.3f}  ({m['fid']['images']} images)"
                 f"{flag(m['fid'])}")
  if "rprecision" in m:
    r = m["rprecision"]
    origin = r.get("encoders_converted_from")
    lines.append(f"R-precision  {r['mean']:.2f} ± {r['std']:.2f}  "
                 f"({r['images']} images, 1 true + 99 other-class captions, 10 folds; "
                 f"DAMSM encoders {r['encoders']}"
                 + (f", converted from {', '.join(origin)})" if origin else ")"))
  if "alignment" in m:
    for split, scores in m["alignment"].items():
      lines.append(f"alignment {split:24s} " + "  ".join(
          f"{k} {v:.3f}" for k, v in scores.items() if k != "n") + f"  ({scores['n']} captions)")
  return "\n".join(lines)


def main(argv=None) -> int:
  if argv is None:  # run as a program (python -m, mirrorgan-evaluate)
    host_memory.restart_with_huge_pages()
  parser = argparse.ArgumentParser(prog="python -m mirrorgan_jax.evaluate",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True,
                      help="a training workdir, its checkpoints/gan folder, or one checkpoint")
  parser.add_argument("--checkpoint", default="latest", choices=("latest", "best"))
  parser.add_argument("--metrics", default="is,fid,rprecision",
                      help=f"comma-separated, from {','.join(METRICS)}")
  parser.add_argument("--num-images", type=int, default=30_000)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--inception-weights", default=None,
                      help="our .npz (python -m mirrorgan_jax.convert fid_inception); "
                           "default config.eval.inception_weights")
  parser.add_argument("--damsm-weights", default=None,
                      help="DAMSM encoders for R-precision: a workdir or damsm checkpoint, e.g. "
                           "AttnGAN's converted with python -m mirrorgan_jax.convert damsm; "
                           "default: the run's own")
  parser.add_argument("--fid-stats", default=None, help="real statistics .npz (mu, sigma)")
  parser.add_argument("--data-dir", default=None, help="override config.data.data_dir")
  parser.add_argument("--batch-size", type=int, default=None)
  add_noise_arguments(parser)
  args = parser.parse_args(argv)
  try:
    report = evaluate(args.workdir, [m.strip() for m in args.metrics.split(",") if m.strip()],
                      num_images=args.num_images, seed=args.seed, checkpoint=args.checkpoint,
                      inception_weights=args.inception_weights, fid_stats=args.fid_stats,
                      data_dir=args.data_dir, batch_size=args.batch_size,
                      damsm_weights=args.damsm_weights, z_scale=args.z_scale,
                      ca_noise=args.ca_noise)
  except USER_ERRORS as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(format_table(report))
  if "path" in report:
    print(f"written to {report['path']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
