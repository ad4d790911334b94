"""What `python -m mirrorgan_jax.convert KIND FILE... --out PATH` does, as a
function (`__main__` parses the flags): convert, check, write."""

import os

from mirrorgan_jax import convert as cv
from mirrorgan_jax import trained
from mirrorgan_jax.convert import backbones, torch_pickle, workdirs
from mirrorgan_jax.data import vocab as vocab_lib
from mirrorgan_jax.metrics import inception_net

FILES = {"damsm": 2, "stream": 2, "generator": 1, "resnet152": 1, "inception": 1,
         "fid_inception": 1}  # discriminators: one per stage


def convert(kind: str, files: list[str], config, out: str, vocab: str | None = None,
            step: int = 0) -> list[str]:
  """Converts and writes; returns what it wrote."""
  want = FILES.get(kind)
  if kind not in FILES and kind != "discriminators":
    raise ValueError(f"unknown kind {kind!r}: use one of "
                     f"{', '.join(list(FILES) + ['discriminators'])}")
  if want is not None and len(files) != want:
    raise ValueError(f"{kind} takes {want} file(s), got {len(files)}")
  for f in files:
    if not os.path.isfile(f):
      raise FileNotFoundError(f"{f}: no such file ({kind} weights)")
  sources = [workdirs.file_label(f) for f in files]
  if kind in ("resnet152", "inception"):
    variables = cv.from_torch(kind, files[0])
    backbones.save_npz(out, kind, variables)
    return [out]
  if kind == "fid_inception":
    state = torch_pickle.state_dict(files[0])
    variant, _ = cv.core.fid_variant(state)
    variables = cv.from_torch(kind, state)
    inception_net.save_weights(out, variables, variant)
    return [out]
  if kind != "stream":  # DAMSM, G and the Ds all read the sentence code
    cv.core.require_official_sentence_code(
        config, "the config", "; convert with --config.text.sentence_code=states")
  states = [torch_pickle.state_dict(f) for f in files]
  if kind == "damsm":
    if not vocab:
      raise ValueError("damsm needs --vocab: the captions.pickle the encoders were trained "
                       "with (its word ids are the embedding's rows)")
    words = vocab_lib.load_captions_pickle(vocab).vocab
    rows = _rows(states[0], "encoder.weight", files[0])
    words.check_size(rows, f"{files[0]} (encoder.weight)")
    config.text.vocab_size = rows
    text = cv.from_torch("text_encoder", states[0], config)
    image = cv.from_torch("image_encoder", states[1], config)
    return [workdirs.write_damsm(out, config, text, image, words, sources),
            os.path.join(out, trained.VOCABULARY_FILE)]
  if kind == "stream":
    config.text.vocab_size = _rows(states[1], "embed.weight", files[1])
    variables = cv.from_torch("captioner", states, config)
    return [workdirs.write_stream(out, config, variables, sources)]
  config.text.vocab_size = _damsm_rows(out, config.text.vocab_size)
  if kind == "generator":
    variables = cv.from_torch("generator", states[0], config)
    return [workdirs.write_generator(out, config, variables, sources, step)]
  variables = cv.from_torch("discriminators", states, config)
  return [workdirs.write_discriminators(out, config, variables, sources)]


def _rows(state: dict, name: str, path: str) -> int:
  if name not in state or getattr(state[name], "ndim", 0) != 2:
    raise ValueError(f"{path}: no {name} matrix (is it the right file?)")
  return int(state[name].shape[0])


def _damsm_rows(out: str, default: int) -> int:
  """The vocabulary size of the damsm phase converted into `out`, if any."""
  if os.path.exists(os.path.join(out, trained.VOCABULARY_FILE)):
    return len(trained.load_vocabulary(out, None))
  return default
