"""Milliseconds per OFFICIAL MirrorGAN training iteration (PyTorch, CPU or CUDA).

The counterpart of `benchmarks/step_time.py` (our JAX step): builds the official
PyTorch modules of qiaott/MirrorGAN (deb220f; imported at run time from the
checkout given by --official, never copied into this repository) with random
weights, and times the body of the official `Trainer.train()` loop (trainer.py)
for one batch of synthetic data:

  text encoder forward (frozen RNN_ENCODER, eval) -> G_NET forward ->
  for each D: zero_grad, discriminator_loss, backward, Adam step ->
  netG.zero_grad, generator_loss (every D on the fake images, the frozen STREAM
  captioner CAPTION_CNN (ResNet-152, eval) + CAPTION_RNN, caption cross-entropy
  * LAMBDA1) + KL_loss -> backward -> Adam step of G -> EMA of G's parameters
  (avg_param_G).

Exactly as the official loop does it, including what it does not do: the G
loss's backward also fills the gradients of every D's weights (they keep
requires_grad; the next D update's zero_grad discards them), the discriminators
run in train mode inside the G loss (BatchNorm batch statistics; running stats
updated again), CAPTION_RNN is not put in eval mode (one LSTM layer: no dropout,
so no difference), and the text encoder runs under autograd (frozen, no grads).
Excluded from the timing: data loading and `prepare_data` (done once, before),
the every-100 log print (never reached), image and checkpoint saving.
Every iteration reuses the same batch, as benchmarks/step_time.py does.

Synthetic data: captions padded to WORDS_NUM=18 with lengths in [1, 18] and ids in
[1, 5450) (vocab 5450 = CUB captions.pickle, the value our configs/birds.py uses),
and real images in [-1, 1] at every scale, drawn exactly like
`mirrorgan_jax.batch.random_batch` (numpy default_rng(0); images transposed to
NCHW), then sorted by length like the official `prepare_data`; random CUB class
ids (1..200) and keys (only passed through, as in the official loop). Random
weights as constructed (netG / netsD through the official `weights_init`); torch
seed fixed (--seed).

Presets (cfg/train_bird.yml loaded, then):
  birds     3 branches (64/128/256 px), batch 12 (train_bird.yml as it is)
  birds_b2  the same with batch 2
  stage64   one 64 px branch (TREE.BRANCH_NUM 1), batch 8, same widths
  tiny      smoke test only: one 64 px branch, batch 2, GF_DIM 4, DF_DIM 4,
            EMBEDDING_DIM 16, CAP sizes 16/8, vocab 50 (the STREAM backbone stays
            ResNet-152 and the image encoder Inception-v3: both are hard-coded)
Each preset runs in its own subprocess, so the peak resident memory
(ru_maxrss) printed is that preset's alone (model construction included).

Patched at run time (nothing is written to the checkout):
  * cfg: train_bird.yml is merged with a Python 3 copy of the official
    `_merge_a_into_b` (the official one uses dict.iteritems); cfg.CUDA = False
    on the CPU (CA_NET draws its noise with torch.FloatTensor(...).normal_()),
    True with --device cuda (torch.cuda.FloatTensor; see "On a GPU" below).
  * generator_loss (miscc/losses.py): its source is recompiled with
    `.data[0]` -> `.item()` (0-dim tensors can no longer be indexed; same value
    as PyTorch 0.3's data[0]) and, on the CPU, its two `.cuda()` calls removed. The
    loop body's own `errD.data[0]` / `kl_loss.data[0]` are `.item()` here, and
    `data_iter.next()` is gone (no data loader).
  * downloads: CAPTION_CNN's `models.resnet152(pretrained=True)` builds
    resnet152(weights=None); CNN_ENCODER's `model_zoo.load_url` (Inception-v3
    ImageNet weights) returns the just-built inception_v3()'s own state dict;
    every other weight loader refuses to run. The official build_models then
    loads trained weights from files (text/image encoder, STREAM): skipped, the
    weights stay random (the timing does not depend on their values).
  * `skimage` (imported by miscc/utils.py for image saving only) is replaced by
    an empty stub module when it is not installed.
  * warnings (implicit softmax dim, Upsample align_corners, deprecated
    nn.init.orthogonal and add_(Number, Tensor)) are silenced.
The official source files are checked against their deb220f sha256 digests; a
mismatch is reported (the loop body below is a transcription of trainer.py).
After the timed iterations (untimed) it asserts that every D and G parameter
has a gradient, the frozen modules none, and that G's EMA moved.

What a current PyTorch does differently from the one the code was written for
(PyTorch 0.3/0.4), kept as the current PyTorch does it: `zero_grad()` now sets
gradients to None instead of zeroing them in place; Adam on CPU runs its
per-parameter (non-foreach) loop; bilinear `nn.Upsample` defaults to
align_corners=False; `mask = (captions == 0)` is a bool tensor. Each timed
iteration also records phase times with time.perf_counter (no effect on the
computation; CPU ops are synchronous).

On a GPU (--device cuda) the official CUDA path is taken: cfg.CUDA = True,
`cudnn.benchmark = True` (Trainer.__init__), every module, label and noise
tensor moved with `.cuda()` as build_models / prepare_labels / train do, the
images and captions on the GPU as prepare_data puts them. One deviation, forced
by current PyTorch: the caption lengths stay on the CPU (prepare_data moves them
to the GPU, but `pack_padded_sequence`, which CAPTION_RNN calls with them, has
required CPU lengths since PyTorch 1.7; the text encoder reads them with
`.tolist()` either way). The phase clocks call `torch.cuda.synchronize()`
before each reading (the loop already waits on the GPU at every `.item()`),
and the memory reported is `torch.cuda.max_memory_allocated` (and _reserved)
next to the host's ru_maxrss. float32 at PyTorch's defaults (cuDNN
convolutions may use TF32, matmuls do not).

Environment: the separate PyTorch venv (see tools/README.md):
  torchenv/bin/python tools/time_torch_step.py --official /tmp/mg
  torchenv/bin/python tools/time_torch_step.py --official /tmp/mg --presets stage64 --steps 5
  torchenv/bin/python tools/time_torch_step.py --official /tmp/mg --presets tiny \
      --steps 1 --warmup 0 --threads 1          # smoke test
"""

import argparse
import ast
import contextlib
import hashlib
import io
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.optim as optim
import torch.utils.model_zoo
import torchvision

from torch_guards import install_no_download_guards, patched

OFFICIAL_ID = "qiaott/MirrorGAN deb220f"
# sha256 of the official files at deb220f.
OFFICIAL_SHA256 = {
    "trainer.py": "e6705926150db42798b27b8ce64c44443fdfb7266d6394613e626d99813b7d6c",
    "model.py": "37d1dac3cdbb623477b9816e46aef50399b3e5a498f9ee35ab2d1352da15b765",
    "miscc/losses.py": "9ef020e8e0207de88c5a5eda2a75662b7c335eb0f26d1196cab0838502f85e29",
    "miscc/utils.py": "7ce9f1b9222f3682acdf5bae47fcfc7ad55978c320276dcf3c2161206380ae05",
    "GLAttention.py": "8b49b17bfa138bae27e3b420da159e4477cf9c6827e684138f03b3e9e713b500",
    "cfg/config.py": "5b39d7b89ec5201b06c08261be0bfc86149740eb9c584b03b2391bc169cfef61",
    "cfg/train_bird.yml": "67630cf51b79d420d30308d497c201c8c526a0a4f6d0b7991a96b3e442244151",
}

VOCAB_CUB = 5450  # n_words of CUB's captions.pickle (configs/birds.py)
PRESETS = {
    "birds": {"branch_num": 3, "batch": 12, "vocab": VOCAB_CUB, "cfg": {}},
    "birds_b2": {"branch_num": 3, "batch": 2, "vocab": VOCAB_CUB, "cfg": {}},
    "stage64": {"branch_num": 1, "batch": 8, "vocab": VOCAB_CUB, "cfg": {}},
    "tiny": {"branch_num": 1, "batch": 2, "vocab": 50,
             "cfg": {"GAN.GF_DIM": 4, "GAN.DF_DIM": 4, "TEXT.EMBEDDING_DIM": 16,
                     "CAP.embed_size": 16, "CAP.hidden_size": 8}},
}
DEFAULT_PRESETS = "birds,birds_b2,stage64"
PHASES = ("text_encoder", "G_forward", "D_updates", "G_loss_forward", "G_backward",
          "G_adam", "G_ema")


# ----------------------------------------------------------------------------- helpers

def check_sources(path: Path):
  bad = []
  for rel, want in OFFICIAL_SHA256.items():
    f = path / rel
    if not f.exists() or hashlib.sha256(f.read_bytes()).hexdigest() != want:
      bad.append(rel)
  if bad:
    print(f"  WARNING: {', '.join(bad)} differ from {OFFICIAL_ID}: the transcribed loop "
          "body may not match this checkout", flush=True)
  return not bad


def import_official(path: Path):
  """(cfg, model, losses, utils) of the official checkout."""
  try:
    import skimage.transform  # noqa: F401
  except ImportError:  # miscc/utils.py imports it for image saving only
    stub = types.ModuleType("skimage")
    stub.transform = types.ModuleType("skimage.transform")
    sys.modules["skimage"] = stub
    sys.modules["skimage.transform"] = stub.transform
  sys.path.insert(0, str(path))
  from cfg.config import cfg
  import model
  from miscc import losses, utils
  for mod in (model, losses, utils):
    assert Path(mod.__file__).resolve().is_relative_to(path), mod.__file__
  return cfg, model, losses, utils


def merge_yaml(cfg, yml: Path):
  """The official cfg_from_file (`_merge_a_into_b`) in Python 3."""
  import yaml

  def merge(a, b, where=""):
    for k, v in a.items():
      if k not in b:
        raise KeyError(f"{where}{k} is not a valid config key")
      if isinstance(v, dict):
        merge(v, b[k], f"{where}{k}.")
        continue
      if type(b[k]) is not type(v):
        raise ValueError(f"type mismatch ({type(b[k])} vs {type(v)}) for {where}{k}")
      b[k] = v
  merge(yaml.safe_load(yml.read_text()), cfg)


def patched_generator_loss(losses, keep_cuda=False):
  """miscc/losses.generator_loss recompiled with `.data[0]` -> `.item()` and
  (unless keep_cuda) `.cuda()` removed, in (a copy of) the module's globals."""
  path = Path(losses.__file__)
  src = path.read_text()
  fn = next(n for n in ast.parse(src).body
            if isinstance(n, ast.FunctionDef) and n.name == "generator_loss")
  seg = ast.get_source_segment(src, fn)
  counts = (seg.count(".data[0]"), seg.count(".cuda()"))
  assert counts == (1, 2), f"generator_loss changed: {counts} .data[0] / .cuda()"
  seg = seg.replace(".data[0]", ".item()")
  if not keep_cuda:
    seg = seg.replace(".cuda()", "")
  tree = ast.parse(seg)
  ast.increment_lineno(tree, fn.lineno - 1)
  env = dict(vars(losses))
  exec(compile(tree, str(path), "exec"), env)  # noqa: S102
  return env["generator_loss"]


def set_cfg(cfg, dotted, value):
  *parents, leaf = dotted.split(".")
  node = cfg
  for p in parents:
    node = node[p]
  assert leaf in node and type(node[leaf]) is type(value), dotted
  node[leaf] = value


def rss_gib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


# ----------------------------------------------------------------------------- one preset

def synthetic_batch(cfg, vocab, seed=0):
  """What the official DataLoader + prepare_data give (CPU tensors): like
  mirrorgan_jax.batch.random_batch, NCHW, sorted by caption length."""
  rng = np.random.default_rng(seed)
  b, t = cfg.TRAIN.BATCH_SIZE, cfg.TEXT.WORDS_NUM
  # = mirrorgan_jax.batch.random_captions(rng, b, t, vocab)
  lengths = rng.integers(1, t + 1, b).astype(np.int32)
  ids = rng.integers(1, vocab, (b, t))
  caps = np.where(np.arange(t)[None] < lengths[:, None], ids, 0)
  sizes = [cfg.TREE.BASE_SIZE * 2**i for i in range(cfg.TREE.BRANCH_NUM)]
  imgs = [torch.from_numpy(rng.uniform(-1, 1, (b, s, s, 3)).astype(np.float32)
                           .transpose(0, 3, 1, 2).copy()) for s in sizes]
  captions = torch.from_numpy(caps.astype(np.int64)).unsqueeze(2)  # b x t x 1, as loaded
  captions_lens = torch.from_numpy(lengths.astype(np.int64))
  class_ids = torch.from_numpy(rng.integers(1, 201, b))
  keys = [f"synthetic/{i}" for i in range(b)]
  # datasets.prepare_data (cfg.CUDA False)
  sorted_cap_lens, sorted_cap_indices = torch.sort(captions_lens, 0, True)
  real_imgs = [im[sorted_cap_indices] for im in imgs]
  captions = captions[sorted_cap_indices].squeeze()
  class_ids = class_ids[sorted_cap_indices].numpy()
  keys = [keys[i] for i in sorted_cap_indices.numpy()]
  return real_imgs, captions, sorted_cap_lens, class_ids, keys


def run_preset(args, name):
  torch.set_num_threads(args.threads)
  warnings.filterwarnings("ignore")
  random.seed(args.seed)
  np.random.seed(args.seed)
  torch.manual_seed(args.seed)
  install_no_download_guards("time_torch_step")

  official = Path(args.official).resolve()
  sources_ok = check_sources(official)
  cfg, M, losses, utils = import_official(official)
  preset = PRESETS[name]
  merge_yaml(cfg, official / "cfg" / "train_bird.yml")
  cuda = args.device == "cuda"
  if cuda and not torch.cuda.is_available():
    raise SystemExit("time_torch_step: --device cuda, but torch sees no GPU")
  cfg.CUDA = cuda
  if cuda:
    torch.cuda.manual_seed_all(args.seed)  # as main.py
    torch.backends.cudnn.benchmark = True  # as Trainer.__init__
  cfg.TREE.BRANCH_NUM = preset["branch_num"]
  cfg.TRAIN.BATCH_SIZE = preset["batch"]
  for k, v in preset["cfg"].items():
    set_cfg(cfg, k, v)
  n_words = preset["vocab"]
  generator_loss = patched_generator_loss(losses, keep_cuda=cuda)
  discriminator_loss, KL_loss = losses.discriminator_loss, losses.KL_loss
  weights_init, copy_G_params = utils.weights_init, utils.copy_G_params

  # ---- Trainer.build_models (trained weights from files: skipped, see the docstring)
  t_build = time.perf_counter()
  captured = []
  original_inception_v3 = torchvision.models.inception_v3
  original_resnet152 = torchvision.models.resnet152

  def inception_v3(*a, **k):  # CNN_ENCODER: models.inception_v3()
    captured.append(original_inception_v3(*a, **k))
    return captured[-1]

  def own_state(*a, **k):  # CNN_ENCODER: model_zoo.load_url(<ImageNet weights>)
    return {key: v.clone() for key, v in captured[-1].state_dict().items()}

  def resnet152(*a, pretrained=False, **k):  # CAPTION_CNN: models.resnet152(pretrained=True)
    assert not a and "weights" not in k
    return original_resnet152(weights=None, **k)

  with patched(torchvision.models, "inception_v3", inception_v3), \
       patched(torch.utils.model_zoo, "load_url", own_state), \
       contextlib.redirect_stdout(io.StringIO()):
    image_encoder = M.CNN_ENCODER(cfg.TEXT.EMBEDDING_DIM)
  assert len(captured) == 1
  for p in image_encoder.parameters():
    p.requires_grad = False
  image_encoder.eval()

  text_encoder = M.RNN_ENCODER(n_words, nhidden=cfg.TEXT.EMBEDDING_DIM)
  for p in text_encoder.parameters():
    p.requires_grad = False
  text_encoder.eval()

  with patched(torchvision.models, "resnet152", resnet152):
    caption_cnn = M.CAPTION_CNN(cfg.CAP.embed_size)
  for p in caption_cnn.parameters():
    p.requires_grad = False
  caption_cnn.eval()

  caption_rnn = M.CAPTION_RNN(cfg.CAP.embed_size, cfg.CAP.hidden_size * 2, n_words,
                              cfg.CAP.num_layers)
  for p in caption_rnn.parameters():
    p.requires_grad = False
  # (the official code does not call caption_rnn.eval())

  assert not cfg.GAN.B_DCGAN
  netsD = []
  netG = M.G_NET()
  if cfg.TREE.BRANCH_NUM > 0:
    netsD.append(M.D_NET64())
  if cfg.TREE.BRANCH_NUM > 1:
    netsD.append(M.D_NET128())
  if cfg.TREE.BRANCH_NUM > 2:
    netsD.append(M.D_NET256())
  netG.apply(weights_init)
  for i in range(len(netsD)):
    netsD[i].apply(weights_init)
  if cfg.CUDA:  # build_models
    text_encoder = text_encoder.cuda()
    image_encoder = image_encoder.cuda()
    caption_cnn = caption_cnn.cuda()
    caption_rnn = caption_rnn.cuda()
    netG.cuda()
    for i in range(len(netsD)):
      netsD[i].cuda()

  # ---- Trainer.train: before the loop
  avg_param_G = copy_G_params(netG)
  # define_optimizers
  optimizersD = [optim.Adam(netsD[i].parameters(), lr=cfg.TRAIN.DISCRIMINATOR_LR,
                            betas=(0.5, 0.999)) for i in range(len(netsD))]
  optimizerG = optim.Adam(netG.parameters(), lr=cfg.TRAIN.GENERATOR_LR, betas=(0.5, 0.999))
  # prepare_labels
  batch_size = cfg.TRAIN.BATCH_SIZE
  real_labels = torch.FloatTensor(batch_size).fill_(1)
  fake_labels = torch.FloatTensor(batch_size).fill_(0)
  match_labels = torch.LongTensor(range(batch_size))
  if cfg.CUDA:
    real_labels = real_labels.cuda()
    fake_labels = fake_labels.cuda()
    match_labels = match_labels.cuda()
  nz = cfg.GAN.Z_DIM
  noise = torch.FloatTensor(batch_size, nz)
  fixed_noise = torch.FloatTensor(batch_size, nz).normal_(0, 1)  # noqa: F841 (image saving)
  if cfg.CUDA:
    noise, fixed_noise = noise.cuda(), fixed_noise.cuda()
  gen_iterations = 0
  build_s = time.perf_counter() - t_build
  rss_built = rss_gib()

  imgs, captions, cap_lens, class_ids, keys = synthetic_batch(cfg, n_words)
  if cfg.CUDA:  # prepare_data; cap_lens stays on the CPU (see the docstring)
    imgs = [im.cuda() for im in imgs]
    captions = captions.cuda()
  sync = torch.cuda.synchronize if cfg.CUDA else (lambda: None)

  def clock():
    sync()
    return time.perf_counter()

  def iteration():
    """The body of trainer.py's `while step < self.num_batches:` loop (data
    loading, image saving and checkpoints excluded); returns the phase times."""
    nonlocal gen_iterations
    t = [clock()]
    # (1) Compute text embeddings
    hidden = text_encoder.init_hidden(batch_size)
    words_embs, sent_emb = text_encoder(captions, cap_lens, hidden)
    words_embs, sent_emb = words_embs.detach(), sent_emb.detach()
    mask = (captions == 0)
    num_words = words_embs.size(2)
    if mask.size(1) > num_words:
      mask = mask[:, :num_words]
    t.append(clock())
    # (2) Generate fake images
    noise.data.normal_(0, 1)
    fake_imgs, _, mu, logvar = netG(noise, sent_emb, words_embs, mask)
    t.append(clock())
    # (3) Update D network
    errD_total = 0
    D_logs = ''
    for i in range(len(netsD)):
      netsD[i].zero_grad()
      errD = discriminator_loss(netsD[i], imgs[i], fake_imgs[i],
                                sent_emb, real_labels, fake_labels)
      errD.backward()
      optimizersD[i].step()
      errD_total += errD
      D_logs += 'errD%d: %.2f ' % (i, errD.item())
    t.append(clock())
    # (4) Update G network
    gen_iterations += 1
    netG.zero_grad()
    errG_total, G_logs = \
        generator_loss(netsD, image_encoder, caption_cnn, caption_rnn, captions, fake_imgs,
                       real_labels, words_embs, sent_emb, match_labels, cap_lens, class_ids)
    kl_loss = KL_loss(mu, logvar)
    errG_total += kl_loss
    G_logs += 'kl_loss: %.2f ' % kl_loss.item()
    t.append(clock())
    errG_total.backward()
    t.append(clock())
    optimizerG.step()
    t.append(clock())
    for p, avg_p in zip(netG.parameters(), avg_param_G):
      avg_p.mul_(0.999).add_(0.001, p.data)
    if gen_iterations % 100 == 0:
      print(D_logs + '\n' + G_logs)
    t.append(clock())
    iteration.losses = (float(errD_total), float(errG_total))
    return [1000 * (b - a) for a, b in zip(t, t[1:])]

  for _ in range(args.warmup):
    iteration()
  times, phases = [], []
  for _ in range(args.steps):
    t0 = clock()
    ph = iteration()
    times.append(1000 * (clock() - t0))
    phases.append(ph)
  # The official side effects, checked (untimed): the G loss's backward left
  # gradients in every D; the frozen modules got none; G's EMA moved.
  assert all(p.grad is not None for d in netsD for p in d.parameters())
  assert all(p.grad is not None for p in netG.parameters())
  assert all(p.grad is None for m in (text_encoder, image_encoder, caption_cnn, caption_rnn)
             for p in m.parameters())
  assert any(not torch.equal(p.data, a) for p, a in zip(netG.parameters(), avg_param_G))

  sizes = [cfg.TREE.BASE_SIZE * 2**i for i in range(cfg.TREE.BRANCH_NUM)]
  med = statistics.median(times)
  result = {
      "preset": name, "official": OFFICIAL_ID, "sources_match": sources_ok,
      "torch": torch.__version__, "threads": torch.get_num_threads(),
      "sizes": sizes, "batch": batch_size, "vocab": n_words,
      "gf_dim": cfg.GAN.GF_DIM, "df_dim": cfg.GAN.DF_DIM,
      "steps": args.steps, "warmup": args.warmup, "ms": times,
      "median_ms": med, "min_ms": min(times), "max_ms": max(times),
      "images_per_s": 1000 * batch_size / med, "build_s": build_s,
      "phases_median_ms": {k: statistics.median(p[j] for p in phases)
                           for j, k in enumerate(PHASES)},
      "peak_rss_gib_after_build": rss_built, "peak_rss_gib": rss_gib(),
      "losses": {"d": iteration.losses[0], "g": iteration.losses[1]},
      "device": args.device,
      "gpu": torch.cuda.get_device_name() if cuda else None,
      "gpu_peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
      "gpu_peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if cuda else None,
  }
  print(f"\n== {name} (official PyTorch, {OFFICIAL_ID}): stages "
        f"{'/'.join(map(str, sizes))} px, batch {batch_size}, ngf {cfg.GAN.GF_DIM}, "
        f"ndf {cfg.GAN.DF_DIM}, vocab {n_words}, STREAM resnet152, float32, "
        f"torch {torch.__version__}, "
        + (f"cuda ({result['gpu']}, cudnn.benchmark)" if cuda
           else f"cpu, {torch.get_num_threads()} threads"))
  print(f"  iteration   median {med:,.1f} ms   min {min(times):,.1f} ms   "
        f"max {max(times):,.1f} ms   ({args.steps} steps after {args.warmup} warm-up)")
  print(f"  throughput  {result['images_per_s']:,.2f} images/s")
  print("  phases      " + "   ".join(f"{k} {v:,.0f}" for k, v in
                                      result["phases_median_ms"].items()) + "  (median ms)")
  print(f"  build       {build_s:,.1f} s (module construction, not timed)")
  print(f"  host peak   {result['peak_rss_gib']:.2f} GiB resident (ru_maxrss of this preset's "
        f"process; {rss_built:.2f} GiB after building the modules)")
  if cuda:
    print(f"  GPU peak    {result['gpu_peak_allocated_gib']:.2f} GiB allocated, "
          f"{result['gpu_peak_reserved_gib']:.2f} GiB reserved (torch.cuda.max_memory_*)")
  print(f"  losses      d {result['losses']['d']:.4f}   g {result['losses']['g']:.4f}",
        flush=True)
  return result


# ----------------------------------------------------------------------------- driver

def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--official", required=True, help="checkout of qiaott/MirrorGAN (deb220f)")
  parser.add_argument("--presets", default=DEFAULT_PRESETS,
                      help=f"comma-separated, of {', '.join(PRESETS)} (tiny: smoke test)")
  parser.add_argument("--steps", type=int, default=3, help="timed iterations")
  parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
  parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
  parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
  parser.add_argument("--seed", type=int, default=0, help="torch/numpy/random seed")
  parser.add_argument("--result-file", default=None, help=argparse.SUPPRESS)  # child mode
  args = parser.parse_args()
  names = [n for n in args.presets.split(",") if n]
  unknown = [n for n in names if n not in PRESETS]
  if unknown:
    parser.error(f"unknown preset(s) {unknown}: use {', '.join(PRESETS)}")
  if args.steps < 1 or args.warmup < 0:
    parser.error("--steps must be >= 1 and --warmup >= 0")

  if args.result_file:  # child: one preset in this process
    assert len(names) == 1
    Path(args.result_file).write_text(json.dumps(run_preset(args, names[0])))
    return

  results, failed = [], []
  with tempfile.TemporaryDirectory() as tmp:
    for name in names:
      out = Path(tmp) / f"{name}.json"
      cmd = [sys.executable, os.path.abspath(__file__), "--official", args.official,
             "--presets", name, "--steps", str(args.steps), "--warmup", str(args.warmup),
             "--threads", str(args.threads), "--device", args.device,
             "--seed", str(args.seed), "--result-file", str(out)]
      sys.stdout.flush()
      rc = subprocess.call(cmd)
      if rc != 0 or not out.exists():
        failed.append(name)
        print(f"\n== {name}: FAILED (exit status {rc})", flush=True)
        continue
      results.append(json.loads(out.read_text()))

  if results:
    print("\n| preset | stages px | batch | median ms / iteration (min-max) | images/s "
          "| peak RSS GiB |")
    print("|---|---|---|---|---|---|")
    for r in results:
      print(f"| {r['preset']} | {'/'.join(map(str, r['sizes']))} | {r['batch']} | "
            f"{r['median_ms']:,.0f} ({r['min_ms']:,.0f}-{r['max_ms']:,.0f}) | "
            f"{r['images_per_s']:.2f} | {r['peak_rss_gib']:.2f} |")
    where = (f"cuda, {results[0]['gpu']}" if args.device == "cuda"
             else f"cpu, {results[0]['threads']} threads")
    print(f"(official PyTorch {OFFICIAL_ID}, torch {results[0]['torch']}, {where}, "
          f"{args.steps} steps after {args.warmup} warm-up)")
  if failed:
    sys.exit(1)


if __name__ == "__main__":
  main()
