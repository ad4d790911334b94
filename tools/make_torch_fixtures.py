"""PyTorch reference fixtures for the converter parity tests.

Builds the OFFICIAL PyTorch MirrorGAN modules (qiaott/MirrorGAN, imported at
run time from the checkout given by --official; its code is never copied into
this repository), plus torchvision's ResNet-152 / Inception-v3 and
pytorch-fid's FID Inception. Every module is filled with deterministic weights
from `tests/seeded_torch_state.py` (`seeded_state(layout_of(state), seed)`,
loaded with strict=True), so the test suite, which has no PyTorch, can rebuild
the very same tensors from the layout and seed alone. The script then

  * saves state dicts with the real `torch.save`, zip (default) and legacy
    (`_use_new_zipfile_serialization=False`) formats,
  * runs each module on fixed inputs (eval mode unless noted) and records
    inputs and outputs (NCHW, float32, ints int64) in `<kind>_io.npz`,
  * writes `manifest.json` (versions, config overrides, per-entry module,
    files, layout, seed; io files; notes on patches and deviations),
  * asserts that every reloaded file (`torch.load` + strict load) reproduces
    the outputs exactly, that the file equals `seeded_state(layout, seed)`, and
    that outputs are finite and of sane magnitude (it prints max |x|).

Nothing is downloaded: every weight URL loader is patched (see NOTES).

Environment (Python 3.11):
  python3.11 -m venv torchenv
  torchenv/bin/pip install torch==2.14.1 torchvision==0.29.1 pytorch-fid
  git clone https://github.com/qiaott/MirrorGAN /tmp/mg
  git -C /tmp/mg checkout deb220fdae8f543c9260f6242fed9f78764eedc1

Usage:
  torchenv/bin/python tools/make_torch_fixtures.py --official /tmp/mg \
      --out tests/fixtures/torch [--size small|full]
  # the other direction: files written by `python -m mirrorgan_jax.export`
  # (netG.pth, netD0.pth .., text_encoder.pth, image_encoder.pth, caption_cnn.pth,
  # caption_rnn.pth) loaded by the official modules and run on the recorded inputs
  torchenv/bin/python tools/make_torch_fixtures.py --official /tmp/mg \
      --out tests/fixtures/torch --check-exports EXPORTED_DIR

`small` (committed in tests/fixtures/torch/): tiny widths; deep backbones are
recorded as layout + seed only. `full`: configs/birds.py widths, every module
also as a real zip file (large; not committed).
"""

import argparse
import ast
import contextlib
import copy
import importlib.util
import io
import json
import sys
import tempfile
import types
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torchvision

from torch_guards import install_no_download_guards, patched

REPO = Path(__file__).resolve().parents[1]
OFFICIAL_ID = "qiaott/MirrorGAN deb220f"

SIZES = {
    "small": {"text.vocab_size": 40, "text.embedding_dim": 12, "text.hidden_dim": 16,
              "text.words_num": 6, "model.ngf": 4, "model.ndf": 4, "model.r_num": 2,
              "model.z_dim": 8, "model.condition_dim": 100, "stream.embed_size": 12,
              "stream.hidden_size": 20},
    "full": {"text.vocab_size": 5450},
}
CONFIG_KEYS = ("text.vocab_size", "text.embedding_dim", "text.hidden_dim", "text.words_num",
               "model.ngf", "model.ndf", "model.r_num", "model.z_dim", "model.condition_dim",
               "stream.embed_size", "stream.hidden_size")

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

NOTES = {
    "weights": "Every tensor of every module is seeded_state(layout, seed) from "
               "tests/seeded_torch_state.py, loaded with load_state_dict(strict=True); "
               "the official/ImageNet initialisation is overwritten entirely.",
    "easydict": "cfg/config.py imports easydict; when it is not installed a minimal "
                "attribute-dict stand-in is registered as sys.modules['easydict'].",
    "cfg": "cfg.CUDA=False, cfg.RNN_TYPE='LSTM', cfg.TRAIN.FLAG=True, cfg.TREE.BRANCH_NUM=3, "
           "TEXT.EMBEDDING_DIM=text.hidden_dim (nef), TEXT.WORDS_NUM=text.words_num, "
           "GAN.GF_DIM=ngf, GAN.DF_DIM=ndf, GAN.R_NUM, GAN.Z_DIM, GAN.CONDITION_DIM=100 "
           "(GLAttention hard-codes Linear(100, idf)).",
    "no_downloads": "torch.utils.model_zoo.load_url, torch.hub.load_state_dict_from_url, "
                    "torchvision.models._api.load_state_dict_from_url and "
                    "pytorch_fid.inception.load_state_dict_from_url refuse to run, except "
                    "where a constructor loads 'pretrained' weights: there the loader returns "
                    "the just-built backbone's own state dict (CNN_ENCODER's "
                    "models.inception_v3(), fid_inception_v3's _inception_v3), captured by "
                    "wrapping the backbone constructor.",
    "caption_cnn": "torchvision.models.resnet152 is wrapped so that the official "
                   "resnet152(pretrained=True) builds resnet152(weights=None).",
    "caption_cnn_input": "The official CAPTION_CNN is fed ImageNet-normalised images "
                         "((x+1)/2 - mean)/std (mean 0.485,0.456,0.406; std 0.229,0.224,0.225); "
                         "captioner_io.npz holds both `images` in [-1, 1] and "
                         "`images_normalized`. Our port normalises inside the encoder.",
    "generator_eps": "CA_NET.reparametrize is patched to use the recorded `eps` (numpy) in "
                     "place of torch's RNG: c = eps * exp(0.5 * logvar) + mu.",
    "generator_mask": "The official mask tiling (GLAttentionGeneral: mask.repeat(queryL, 1) "
                      "against attn rows ordered batch-major, so row b*queryL+q is masked "
                      "with mask[(b*queryL+q) % batch]) is kept as is: the *_padded outputs "
                      "document that deviation. Case B reuses case A's z, sent_emb, "
                      "words_embs and eps, only the mask differs.",
    "softmax": "The official nn.Softmax() calls have no dim: torch picks dim=1 for 2-D and "
               "4-D inputs (deprecation warnings silenced).",
    "discriminators": "uncond/cond are the official D_GET_LOGITS outputs (after the sigmoid); "
                      "*_logit are the outputs of outlogits[0] (the conv before the sigmoid), "
                      "captured by forward hooks during the same official forward. "
                      "train_*: netD0.img_code_s16 (a copy, from the seeded state) run once in "
                      "train mode on image0; BatchNorm running_var is updated with PyTorch's "
                      "unbiased batch variance (momentum 0.1); k is the Sequential index.",
    "captioner": "outputs: CAPTION_RNN.forward(features, captions, cap_lens) as PyTorch "
                 "returns it (packed rows, time-major); logits_padded places the same rows "
                 "at [b, t] (zeros past each length); sampled = CAPTION_RNN.sample(features). "
                 "features is CAPTION_CNN's output on images_normalized.",
    "backbones": "resnet152 = torchvision resnet152(weights=None); inception = "
                 "torchvision inception_v3(weights=None, aux_logits=True, init_weights=False), "
                 "transform_input False; fid_inception = pytorch_fid.inception."
                 "fid_inception_v3(). pool = avgpool output flattened (forward hook); "
                 "mixed_6e = Mixed_6e output (forward hook).",
    "text_encoder": "RNN_ENCODER(ntoken=vocab, ninput=text.embedding_dim, "
                    "nhidden=text.hidden_dim) in eval mode (dropout off), "
                    "hidden=init_hidden(3); lengths descending, zeros after each length.",
    "determinism": "CPU float32, fixed torch and numpy seeds; npz entries written with a "
                   "fixed zip timestamp so reruns give identical npz files (LZMA-compressed "
                   "zip entries; np.load reads them). The zip-format .pth files are byte-identical "
                   "too; the legacy ones are not (torch's legacy writer keys storages by "
                   "memory address), but their tensors are.",
}


# ----------------------------------------------------------------------------- helpers

def _load_seeded_module():
  spec = importlib.util.spec_from_file_location(
      "seeded_torch_state", REPO / "tests" / "seeded_torch_state.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


_seeded = _load_seeded_module()


def birds_config(size):
  """configs/birds.py values (read from its source, no ml_collections needed)
  with the overrides of `size`."""
  tree = ast.parse((REPO / "configs" / "birds.py").read_text())
  values = {}
  for node in ast.walk(tree):
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
      t = node.targets[0]
      if (isinstance(t, ast.Attribute) and isinstance(t.value, ast.Attribute)
          and isinstance(t.value.value, ast.Name) and t.value.value.id == "config"
          and isinstance(node.value, ast.Constant)):
        values[f"{t.value.attr}.{t.attr}"] = node.value.value
  config = {k: values[k] for k in CONFIG_KEYS}
  config.update(SIZES[size])
  return config


def install_fixture_guards():
  import pytorch_fid.inception
  install_no_download_guards("make_torch_fixtures",
                             (pytorch_fid.inception, "load_state_dict_from_url"))


def _own_state_loader(captured):
  def load(*args, **kwargs):
    assert captured, "loader called before the backbone was built"
    return {k: v.clone() for k, v in captured[-1].state_dict().items()}
  return load


def _capturing(builder, captured):
  def build(*args, **kwargs):
    model = builder(*args, **kwargs)
    captured.append(model)
    return model
  return build


def seed_module(module, seed):
  """Loads seeded_state(layout_of(state), seed) into `module`; returns the layout."""
  state = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
  layout = _seeded.layout_of(state)
  values = _seeded.seeded_state(layout, seed)
  module.load_state_dict({k: torch.from_numpy(v) for k, v in values.items()}, strict=True)
  return layout


def save_npz(path, arrays):
  """Like np.savez_compressed (np.load reads it), but LZMA-compressed (a quarter
  smaller than deflate on these float32 arrays) and with a fixed zip timestamp,
  so reruns give byte-identical files."""
  with zipfile.ZipFile(path, "w", zipfile.ZIP_LZMA) as zf:
    for name, value in arrays.items():
      info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
      info.compress_type = zipfile.ZIP_LZMA
      info.external_attr = 0o644 << 16
      buf = io.BytesIO()
      np.lib.format.write_array(buf, np.ascontiguousarray(value), allow_pickle=False)
      zf.writestr(info, buf.getvalue())


def np_out(t):
  a = t.detach().cpu().numpy()
  if a.dtype == np.float64:
    a = a.astype(np.float32)
  return a


class Hooks:
  """Forward-hook outputs of named submodules."""

  def __init__(self, modules):
    self.out, self.handles = {}, []
    for name, module in modules.items():
      self.handles.append(module.register_forward_hook(self._hook(name)))

  def _hook(self, name):
    def hook(module, inputs, output):
      self.out[name] = output.detach().clone()
    return hook

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    for h in self.handles:
      h.remove()


# ----------------------------------------------------------------------------- official

def import_official(path):
  try:
    import easydict  # noqa: F401
  except ImportError:
    class EasyDict(dict):
      def __getattr__(self, key):
        try:
          return self[key]
        except KeyError as e:
          raise AttributeError(key) from e

      def __setattr__(self, key, value):
        self[key] = value
    stub = types.ModuleType("easydict")
    stub.EasyDict = EasyDict
    sys.modules["easydict"] = stub
  sys.path.insert(0, str(Path(path).resolve()))
  from cfg.config import cfg  # the official config
  import GLAttention  # noqa: F401
  import model as official
  assert Path(official.__file__).resolve().parent == Path(path).resolve(), official.__file__
  return cfg, official


def configure(cfg, c):
  assert c["model.condition_dim"] == 100, "GLAttention hard-codes Linear(100, idf)"
  cfg.CUDA = False
  cfg.RNN_TYPE = "LSTM"
  cfg.TRAIN.FLAG = True
  cfg.TREE.BRANCH_NUM = 3
  cfg.TEXT.EMBEDDING_DIM = c["text.hidden_dim"]
  cfg.TEXT.WORDS_NUM = c["text.words_num"]
  cfg.GAN.GF_DIM = c["model.ngf"]
  cfg.GAN.DF_DIM = c["model.ndf"]
  cfg.GAN.R_NUM = c["model.r_num"]
  cfg.GAN.Z_DIM = c["model.z_dim"]
  cfg.GAN.CONDITION_DIM = c["model.condition_dim"]


class Official:
  """Constructors of every entry, with the import-time patches applied."""

  def __init__(self, path, c):
    self.cfg, self.m = import_official(path)
    configure(self.cfg, c)
    self.c = c
    self.eps = None  # the recorded CA_NET noise, set by the generator run
    fixtures = self

    def reparametrize(ca_net, mu, logvar):
      eps = torch.from_numpy(fixtures.eps)
      assert eps.shape == mu.shape, (eps.shape, mu.shape)
      std = logvar.mul(0.5).exp()
      return eps.mul(std).add(mu)
    self.m.CA_NET.reparametrize = reparametrize

  def text_encoder(self):
    c = self.c
    return self.m.RNN_ENCODER(c["text.vocab_size"], ninput=c["text.embedding_dim"],
                              nhidden=c["text.hidden_dim"])

  def image_encoder(self):
    captured = []
    with patched(torchvision.models, "inception_v3",
                 _capturing(torchvision.models.inception_v3, captured)), \
         patched(torch.utils.model_zoo, "load_url", _own_state_loader(captured)), \
         contextlib.redirect_stdout(io.StringIO()):  # its 'Load pretrained model' print
      net = self.m.CNN_ENCODER(self.c["text.hidden_dim"])
    assert len(captured) == 1
    return net

  def netG(self):
    return self.m.G_NET()

  def netD0(self):
    return self.m.D_NET64()

  def netD1(self):
    return self.m.D_NET128()

  def netD2(self):
    return self.m.D_NET256()

  def caption_cnn(self):
    original = torchvision.models.resnet152

    def resnet152(*args, pretrained=False, **kwargs):
      assert not args and "weights" not in kwargs
      return original(weights=None, **kwargs)
    with patched(torchvision.models, "resnet152", resnet152):
      return self.m.CAPTION_CNN(self.c["stream.embed_size"])

  def caption_rnn(self):
    c = self.c
    return self.m.CAPTION_RNN(c["stream.embed_size"], c["stream.hidden_size"],
                              c["text.vocab_size"], 1)

  def resnet152(self):
    return torchvision.models.resnet152(weights=None)

  def inception(self):
    return torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)

  def fid_inception(self):
    import pytorch_fid.inception as fid
    captured = []
    with patched(fid, "_inception_v3", _capturing(fid._inception_v3, captured)), \
         patched(fid, "load_state_dict_from_url", _own_state_loader(captured)):
      net = fid.fid_inception_v3()
    assert len(captured) == 1
    return net


# entry: (official class, seed)
ENTRIES = {
    "text_encoder": ("RNN_ENCODER", 101),
    "image_encoder": ("CNN_ENCODER", 102),
    "netG": ("G_NET", 103),
    "netD0": ("D_NET64", 104),
    "netD1": ("D_NET128", 105),
    "netD2": ("D_NET256", 106),
    "caption_cnn": ("CAPTION_CNN", 107),
    "caption_rnn": ("CAPTION_RNN", 108),
    "resnet152": ("torchvision.models.resnet152", 109),
    "inception": ("torchvision.models.inception_v3", 110),
    "fid_inception": ("pytorch_fid.inception.fid_inception_v3", 111),
}
SMALL_FILES = ("text_encoder", "netG", "netD0", "netD1", "netD2", "caption_rnn")
FULL_LEGACY = ("text_encoder",)


# ----------------------------------------------------------------------------- io kinds

def _uniform(rng, shape):
  return rng.uniform(-1.0, 1.0, shape).astype(np.float32)


def _tokens(rng, lengths, T, vocab):
  caps = np.zeros((len(lengths), T), np.int64)
  for b, n in enumerate(lengths):
    caps[b, :n] = rng.integers(1, vocab, n)
  return caps


def io_text_encoder(mods, c, rng):
  T = c["text.words_num"]
  lens = np.array([T, T - 2, 2], np.int64)
  inp = {"captions": _tokens(rng, lens, T, c["text.vocab_size"]), "cap_lens": lens}

  def run(mods, inp):
    enc = mods["text_encoder"]
    words, sent = enc(torch.from_numpy(inp["captions"]), torch.from_numpy(inp["cap_lens"]),
                      enc.init_hidden(3))
    return {"words": np_out(words), "sentence": np_out(sent)}
  return inp, run


def io_image_encoder(mods, c, rng):
  inp = {"images": _uniform(rng, (2, 3, 64, 64))}

  def run(mods, inp):
    features, code = mods["image_encoder"](torch.from_numpy(inp["images"]))
    return {"features": np_out(features), "cnn_code": np_out(code)}
  return inp, run


def io_generator(mods, c, rng, official):
  T, nef = c["text.words_num"], c["text.hidden_dim"]
  mask_padded = np.zeros((2, T), bool)
  mask_padded[1, 3:] = True
  inp = {"z": rng.standard_normal((2, c["model.z_dim"])).astype(np.float32),
         "sent_emb": _uniform(rng, (2, nef)),
         "words_embs": _uniform(rng, (2, nef, T)),
         "eps": rng.standard_normal((2, c["model.condition_dim"])).astype(np.float32),
         "mask_padded": mask_padded}

  def run(mods, inp):
    out = {}
    official.eps = inp["eps"]
    for suffix, mask in (("", np.zeros((2, T), bool)), ("_padded", inp["mask_padded"])):
      imgs, atts, mu, logvar = mods["netG"](
          torch.from_numpy(inp["z"]), torch.from_numpy(inp["sent_emb"]),
          torch.from_numpy(inp["words_embs"]), torch.from_numpy(mask))
      assert len(imgs) == 3 and len(atts) == 2
      for i, img in enumerate(imgs):
        out[f"img{i}{suffix}"] = np_out(img)
      for i, att in enumerate(atts):
        out[f"att{i}{suffix}"] = np_out(att)
      out[f"mu{suffix}"], out[f"logvar{suffix}"] = np_out(mu), np_out(logvar)
    official.eps = None
    return out
  return inp, run


def io_discriminators(mods, c, rng):
  inp = {f"image{i}": _uniform(rng, (2, 3, 64 * 2 ** i, 64 * 2 ** i)) for i in range(3)}
  inp["sentence"] = _uniform(rng, (2, c["text.hidden_dim"]))

  def run(mods, inp):
    out = {}
    sentence = torch.from_numpy(inp["sentence"])
    for i in range(3):
      net = mods[f"netD{i}"]
      code = net(torch.from_numpy(inp[f"image{i}"]))
      with Hooks({"u": net.UNCOND_DNET.outlogits[0], "c": net.COND_DNET.outlogits[0]}) as h:
        uncond = net.UNCOND_DNET(code)
        cond = net.COND_DNET(code, sentence)
      out[f"code{i}"] = np_out(code)
      out[f"uncond{i}"], out[f"cond{i}"] = np_out(uncond), np_out(cond)
      out[f"uncond_logit{i}"] = np_out(h.out["u"].reshape(-1))
      out[f"cond_logit{i}"] = np_out(h.out["c"].reshape(-1))
    # Train-mode BatchNorm statistics, from the seeded state.
    s16 = copy.deepcopy(mods["netD0"].img_code_s16).train()
    out["train_code0"] = np_out(s16(torch.from_numpy(inp["image0"])))
    for k, layer in enumerate(s16):
      if isinstance(layer, nn.BatchNorm2d):
        out[f"train_running_mean_{k}"] = np_out(layer.running_mean)
        out[f"train_running_var_{k}"] = np_out(layer.running_var)
    return out
  return inp, run


def io_captioner(mods, c, rng):
  T = c["text.words_num"]
  images = _uniform(rng, (2, 3, 64, 64))
  normalized = (((images + 1) / 2 - IMAGENET_MEAN[:, None, None])
                / IMAGENET_STD[:, None, None]).astype(np.float32)
  lens = np.array([T, 3], np.int64)
  inp = {"images": images, "images_normalized": normalized,
         "captions": _tokens(rng, lens, T, c["text.vocab_size"]), "cap_lens": lens}

  def run(mods, inp):
    from torch.nn.utils.rnn import pack_padded_sequence
    features = mods["caption_cnn"](torch.from_numpy(inp["images_normalized"]))
    rnn = mods["caption_rnn"]
    lens = torch.from_numpy(inp["cap_lens"])
    outputs = rnn(features, torch.from_numpy(inp["captions"]), lens)
    # Where each packed row belongs: pack the flat index b * T + t the same way.
    index = torch.arange(2 * T).reshape(2, T)
    order = pack_padded_sequence(index, lens, batch_first=True).data.numpy()
    outputs_np = np_out(outputs)
    padded = np.zeros((2 * T, outputs_np.shape[1]), np.float32)
    padded[order] = outputs_np
    return {"features": np_out(features), "outputs": outputs_np,
            "logits_padded": padded.reshape(2, T, -1),
            "sampled": rnn.sample(features).numpy().astype(np.int64)}
  return inp, run


def io_resnet152(mods, c, rng):
  inp = {"images": rng.standard_normal((2, 3, 64, 64)).astype(np.float32)}

  def run(mods, inp):
    net = mods["resnet152"]
    with Hooks({"pool": net.avgpool}) as h:
      logits = net(torch.from_numpy(inp["images"]))
    return {"pool": np_out(h.out["pool"].flatten(1)), "logits": np_out(logits)}
  return inp, run


def io_inception(mods, c, rng):
  inp = {"images": _uniform(rng, (2, 3, 96, 96))}

  def run(mods, inp):
    net = mods["inception"]
    assert not net.transform_input
    with Hooks({"mixed_6e": net.Mixed_6e, "pool": net.avgpool}) as h:
      logits = net(torch.from_numpy(inp["images"]))
    return {"mixed_6e": np_out(h.out["mixed_6e"]), "pool": np_out(h.out["pool"].flatten(1)),
            "logits": np_out(logits)}
  return inp, run


def io_fid_inception(mods, c, rng):
  inp = {"images": _uniform(rng, (2, 3, 96, 96))}

  def run(mods, inp):
    net = mods["fid_inception"]
    with Hooks({"pool": net.avgpool}) as h:
      logits = net(torch.from_numpy(inp["images"]))
    return {"pool": np_out(h.out["pool"].flatten(1)), "logits": np_out(logits)}
  return inp, run


# kind: (entries, io builder, numpy seed of the inputs)
KINDS = {
    "text_encoder": (("text_encoder",), io_text_encoder, 201),
    "image_encoder": (("image_encoder",), io_image_encoder, 202),
    "generator": (("netG",), io_generator, 203),
    "discriminators": (("netD0", "netD1", "netD2"), io_discriminators, 204),
    "captioner": (("caption_cnn", "caption_rnn"), io_captioner, 205),
    "resnet152": (("resnet152",), io_resnet152, 206),
    "inception": (("inception",), io_inception, 207),
    "fid_inception": (("fid_inception",), io_fid_inception, 208),
}


# ----------------------------------------------------------------------------- main

def check_magnitudes(kind, arrays):
  for name, a in arrays.items():
    if a.dtype == bool:
      print(f"  {kind}/{name}: {a.shape} bool, {int(a.sum())} True")
      continue
    if np.issubdtype(a.dtype, np.integer):
      print(f"  {kind}/{name}: {a.shape} {a.dtype}, range [{a.min()}, {a.max()}]")
      continue
    assert a.dtype == np.float32, (name, a.dtype)
    assert np.all(np.isfinite(a)), f"{kind}/{name} not finite"
    m = float(np.abs(a).max())
    print(f"  {kind}/{name}: {a.shape} max|x| = {m:.6g}")
    assert 1e-4 < m < 1e4, f"{kind}/{name}: max|x| {m} out of range"


def dump_manifest(manifest):
  """Indented JSON, one layout row a line."""
  rows = {}
  m = copy.deepcopy(manifest)
  for entry in m["entries"].values():
    for i, row in enumerate(entry["layout"]):
      key = f"@@row{len(rows)}@@"
      rows[key] = json.dumps(row)
      entry["layout"][i] = key
  text = json.dumps(m, indent=1)
  for key, row in rows.items():
    text = text.replace(f'"{key}"', row)
  return text + "\n"


def build(official, names):
  mods = {}
  for name in names:
    torch.manual_seed(0)
    mods[name] = getattr(official, name)().eval()
  return mods


def check_exports(official, c, exports: Path, fixtures: Path):
  """Loads the files `python -m mirrorgan_jax.export` wrote into the official
  modules (torch.load weights_only, load_state_dict strict) and runs them on the
  recorded inputs: each output must equal the recorded one (the recording came
  from the files the export was converted from)."""
  checked = 0
  for kind, (names, make_io, io_seed) in KINDS.items():
    paths = {n: exports / f"{n}.pth" for n in names}
    if not all(p.exists() for p in paths.values()):
      continue
    mods = build(official, names)
    for name, path in paths.items():
      mods[name].load_state_dict(torch.load(path, map_location="cpu", weights_only=True),
                                 strict=True)
    extra = (official,) if kind == "generator" else ()
    inp, run = make_io(mods, c, np.random.default_rng(io_seed), *extra)
    torch.manual_seed(0)
    outputs = run(mods, inp)
    with np.load(fixtures / f"{kind}_io.npz") as f:
      for k, v in outputs.items():
        want = f[k]
        if np.issubdtype(v.dtype, np.floating):
          diff = float(np.abs(v.astype(np.float64) - want).max())
          assert diff <= 1e-5, f"{kind}/{k}: max abs difference {diff:.3g}"
          print(f"  {kind}/{k}: max abs difference {diff:.3g}")
        else:
          assert np.array_equal(v, want), f"{kind}/{k} differs"
    print(f"[{kind}] {', '.join(str(p) for p in paths.values())}: loaded strict, outputs equal")
    checked += 1
  assert checked, f"no exported files ({', '.join(ENTRIES)}.pth) in {exports}"


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--official", required=True, help="checkout of qiaott/MirrorGAN")
  parser.add_argument("--out", required=True)
  parser.add_argument("--size", choices=("small", "full"), default="small")
  parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated subset")
  parser.add_argument("--check-exports", default=None, metavar="DIR",
                      help="instead: load DIR/<entry>.pth (written by mirrorgan_jax.export) "
                           "into the official modules and compare with --out's recordings")
  args = parser.parse_args()

  warnings.filterwarnings("ignore", message="Implicit dimension choice")
  warnings.filterwarnings("ignore", message="dropout option adds dropout")
  warnings.filterwarnings("ignore", category=FutureWarning)
  torch.set_grad_enabled(False)
  np.random.seed(0)
  torch.manual_seed(0)
  install_fixture_guards()
  import pytorch_fid

  c = birds_config(args.size)
  official = Official(args.official, c)
  out = Path(args.out)
  if args.check_exports:
    check_exports(official, c, Path(args.check_exports), out)
    return
  out.mkdir(parents=True, exist_ok=True)
  manifest = {"size": args.size, "torch": torch.__version__,
              "torchvision": torchvision.__version__, "pytorch_fid": pytorch_fid.__version__,
              "official": OFFICIAL_ID, "config": SIZES[args.size], "entries": {}, "io": {},
              "notes": NOTES}
  manifest_path = out / "manifest.json"
  if manifest_path.exists():  # keep the kinds not rerun this time
    old = json.loads(manifest_path.read_text())
    if old.get("size") == args.size:
      manifest["entries"].update(old.get("entries", {}))
      manifest["io"].update(old.get("io", {}))

  tmp = tempfile.TemporaryDirectory()
  for kind in args.kinds.split(","):
    names, make_io, io_seed = KINDS[kind]
    print(f"[{kind}]", flush=True)
    mods = build(official, names)
    layouts = {name: seed_module(mods[name], ENTRIES[name][1]) for name in names}
    extra = (official,) if kind == "generator" else ()
    inp, run = make_io(mods, c, np.random.default_rng(io_seed), *extra)
    torch.manual_seed(0)
    outputs = run(mods, inp)
    assert not set(inp) & set(outputs)
    check_magnitudes(kind, outputs)
    save_npz(out / f"{kind}_io.npz", {**inp, **outputs})
    manifest["io"][kind] = f"{kind}_io.npz"

    # Files: zip (default) and legacy.
    files = {}  # name -> {format: path}
    for name in names:
      module, seed = ENTRIES[name]
      small = args.size == "small"
      zip_file = f"{name}.pth" if (not small or name in SMALL_FILES) else None
      legacy_file = (f"{name}_legacy.pth"
                     if (name in SMALL_FILES if small else name in FULL_LEGACY) else None)
      state = mods[name].state_dict()
      zip_path = out / zip_file if zip_file else Path(tmp.name) / f"{name}.pth"
      torch.save(state, zip_path)
      files[name] = {"zip": zip_path}
      if legacy_file:
        torch.save(state, out / legacy_file, _use_new_zipfile_serialization=False)
        files[name]["legacy"] = out / legacy_file
      manifest["entries"][name] = {
          "module": module, "file": zip_file, "legacy_file": legacy_file,
          "layout": [[k, list(s), d] for k, s, d in layouts[name]], "seed": seed}
    del mods

    # Reload every file into a fresh module; it must reproduce the outputs.
    for fmt in ("zip", "legacy"):
      present = [n for n in names if fmt in files[n]]
      if not present:
        continue
      fresh = build(official, names)
      for name in names:
        path = files[name].get(fmt, files[name]["zip"])
        state = torch.load(path, map_location="cpu", weights_only=True)
        expected = _seeded.seeded_state(layouts[name], ENTRIES[name][1])
        assert list(state) == list(expected), name
        for k, v in state.items():
          assert np.array_equal(v.numpy(), expected[k]), (name, k)
        fresh[name].load_state_dict(state, strict=True)
      torch.manual_seed(0)
      again = run(fresh, inp)
      for k, v in outputs.items():
        assert v.dtype == again[k].dtype and np.array_equal(v, again[k]), \
            f"{kind}/{k}: {fmt} reload differs"
      print(f"  reloaded {fmt}: {', '.join(present)} reproduce the outputs", flush=True)
      del fresh

  manifest["entries"] = {k: manifest["entries"][k] for k in ENTRIES if k in manifest["entries"]}
  manifest["io"] = {k: manifest["io"][k] for k in KINDS if k in manifest["io"]}
  manifest_path.write_text(dump_manifest(manifest))
  tmp.cleanup()
  total = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
  print(f"wrote {out} ({total / 2**20:.2f} MiB)")


if __name__ == "__main__":
  main()
