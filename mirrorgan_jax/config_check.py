"""Validation of a configuration before anything is built: a value out of range
is reported with its full field name, the value and what is allowed."""

import os
import re
from typing import Any, Callable

DTYPES = ("float32", "bfloat16")
STREAM_BACKBONES = ("resnet152", "small")
IMAGE_ENCODER_BACKBONES = ("inception_v3", "small")
SENTENCE_CODES = ("states", "states_mean")  # text.sentence_code; "states" is official
DATASETS = ("shapes", "birds", "coco")
MAX_IMAGE_SIZE = 512  # the last stage's side; the official one is 256


class ConfigError(ValueError):
  """A configuration field holds a value the code cannot run with."""


def _get(config, path: str):
  node = config
  for part in path.split("."):
    try:
      node = node[part]
    except (KeyError, AttributeError) as e:
      raise ConfigError(f"config.{path} is missing") from e
  return node


def _require(config, path: str, ok: Callable[[Any], bool], allowed: str):
  value = _get(config, path)
  try:
    good = ok(value)
  except TypeError:
    good = False
  if not good:
    raise ConfigError(f"config.{path} must be {allowed}, got {value!r}")


def _is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _positive_int(v) -> bool:
  return _is_int(v) and v > 0


def _power_of_two(v) -> bool:
  return _is_int(v) and v > 0 and v & (v - 1) == 0


def _widths(v) -> bool:
  return len(v) > 0 and all(_positive_int(w) for w in v)


def check_config(config) -> None:
  """Raises ConfigError naming the first field that is out of range."""
  r = lambda path, ok, allowed: _require(config, path, ok, allowed)  # noqa: E731
  r("seed", _is_int, "an integer")
  r("batch_size", _positive_int, "a positive integer")
  r("dtype", lambda v: v in DTYPES, f"one of {DTYPES}")
  r("text.vocab_size", lambda v: _is_int(v) and v >= 2,
    "an integer >= 2 (id 0 is padding)")
  r("text.words_num", _positive_int, "a positive integer")
  r("text.embedding_dim", _positive_int, "a positive integer")
  r("text.hidden_dim", lambda v: _positive_int(v) and v % 2 == 0,
    "a positive even integer (two LSTM directions)")
  r("text.dropout", lambda v: 0.0 <= v < 1.0, "in [0, 1)")
  if "sentence_code" in config.text:  # absent from configs saved before it existed
    r("text.sentence_code", lambda v: v in SENTENCE_CODES, f"one of {SENTENCE_CODES}")
  for f in ("ngf", "ndf", "z_dim", "condition_dim", "num_stages"):
    r(f"model.{f}", _positive_int, "a positive integer")
  r("model.ca_normalize_input", lambda v: isinstance(v, bool), "True or False")
  r("model.image_subpixels", _positive_int, "a positive integer (1: the official head)")
  r("model.masked_image_head", lambda v: isinstance(v, bool), "True or False")
  r("model.r_num", lambda v: _is_int(v) and v >= 0, "an integer >= 0")
  r("model.base_size", lambda v: _power_of_two(v) and 8 <= v <= MAX_IMAGE_SIZE,
    f"a power of two from 8 to {MAX_IMAGE_SIZE}")
  r("model.num_stages", lambda v: config.model.base_size * 2**(v - 1) <= MAX_IMAGE_SIZE,
    f"at most {MAX_IMAGE_SIZE.bit_length() - config.model.base_size.bit_length() + 1} with "
    f"model.base_size={config.model.base_size} (the last stage would be "
    f"{config.model.base_size * 2**(config.model.num_stages - 1)} px; the limit is "
    f"{MAX_IMAGE_SIZE}, the official last stage 256)")
  r("stream.backbone", lambda v: v in STREAM_BACKBONES, f"one of {STREAM_BACKBONES}")
  for f in ("image_size", "embed_size", "hidden_size", "max_decode_len"):
    r(f"stream.{f}", _positive_int, "a positive integer")
  r("stream.small_widths", _widths, "a non-empty sequence of positive integers")
  r("image_encoder.backbone", lambda v: v in IMAGE_ENCODER_BACKBONES,
    f"one of {IMAGE_ENCODER_BACKBONES}")
  r("image_encoder.image_size", _positive_int, "a positive integer")
  r("image_encoder.small_widths", _widths,
    "a non-empty sequence of positive integers")
  for f in ("g_lr", "d_lr"):
    r(f"optim.{f}", lambda v: v > 0, "a positive number")
  for f in ("b1", "b2"):
    r(f"optim.{f}", lambda v: 0.0 <= v < 1.0, "in [0, 1)")
  for f in ("stream_weight", "kl_weight", "negative_weight", "damsm_weight", "edge_d_weight"):
    r(f"loss.{f}", lambda v: v >= 0, "a number >= 0")
  r("loss.edge_d_gain", lambda v: v > 0, "a positive number")
  r("loss.negative_min_share", lambda v: 0.0 <= v <= 1.0, "in [0, 1]")
  r("ema_decay", lambda v: 0.0 <= v <= 1.0, "in [0, 1]")
  r("gan.ema_bn_batches", lambda v: _is_int(v) and v >= 0, "an integer >= 0")
  for f in ("sample_z_scale", "sample_ca_noise"):
    r(f"gan.{f}", lambda v: v >= 0, "a number >= 0")
  r("dataset", lambda v: v in DATASETS, f"one of {DATASETS}")
  r("data.data_dir", lambda v: isinstance(v, str) and v, "a folder path")
  r("data.manual_dir", lambda v: isinstance(v, str), "a folder path or ''")
  r("data.workers", lambda v: _is_int(v) and v >= 0, "an integer >= 0")
  r("data.prefetch", lambda v: _is_int(v) and v >= 0, "an integer >= 0")
  if config.dataset == "shapes":
    _check_shapes(r)
  for f in ("damsm.batch_size", "damsm.num_steps", "damsm.steps_per_epoch", "stream.batch_size",
            "stream.num_steps", "gan.num_steps", "train.keep_latest", "train.eval_batches"):
    r(f, _positive_int, "a positive integer")
  for f in ("damsm.lr", "stream.lr", "damsm.grad_clip", "damsm.gamma1", "damsm.gamma2",
            "damsm.gamma3"):
    r(f, lambda v: v > 0, "a positive number")
  r("damsm.lr_decay", lambda v: 0 < v <= 1, "in (0, 1]")
  if "near_misses" in config.damsm:  # absent from configs saved before it existed
    r("damsm.near_misses", lambda v: v is False or (v is True and config.dataset == "shapes"),
      "False, or True with dataset 'shapes' (near misses are made by editing scenes)")
    if config.damsm.near_misses:
      r("damsm.batch_size", lambda v: v % 2 == 0,
        "even with damsm.near_misses (each image comes with its near miss)")
  for f in ("function_word_swap", "function_word_drop", "function_word_insert"):
    if f in config.damsm:  # absent from configs saved before it existed
      r(f"damsm.{f}", lambda v: v == 0 or (0 < v <= 1 and config.dataset == "shapes"),
        "a rate in [0, 1], above 0 only with dataset 'shapes' (its attribute words are known)")
  for f in ("log_every", "checkpoint_every", "sample_every"):
    r(f"train.{f}", lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0: never)")
  r("train.nan_policy", lambda v: v in ("stop", "skip"), "'stop' or 'skip'")
  r("train.distributed", lambda v: v in ("auto", "yes", "no"), "'auto', 'yes' or 'no'")
  r("eval.inception_weights", lambda v: isinstance(v, str), "a .npz path or ''")
  # Absent from configs saved before the PyTorch weights fields existed.
  for f in ("image_encoder.inception_weights", "stream.resnet_weights"):
    if f.split(".")[1] in config[f.split(".")[0]]:
      r(f, lambda v: isinstance(v, str), "a .pth or .npz path, or ''")
  if config.loss.get("colour_twin_weight", 0.0):  # absent from configs saved before it
    r("loss.colour_twin_weight",
      lambda v: v > 0 and config.dataset == "shapes" and config.model.masked_image_head,
      "0, or a number > 0 with dataset 'shapes' and model.masked_image_head (twins are made "
      "by recolouring scenes, and their coverages compared)")
    every = config.gan.get("twin_every", 2)
    if "twin_every" in config.gan:
      r("gan.twin_every", lambda v: _is_int(v) and v >= 2, "an integer >= 2")
    r("batch_size", lambda v: v % every == 0,
      f"a multiple of gan.twin_every={every} with loss.colour_twin_weight "
      "(the last row of every gan.twin_every is a colour twin)")
  if "concurrent_pretraining" in config.train:  # absent from configs saved before it
    r("train.concurrent_pretraining", lambda v: isinstance(v, bool), "True or False")
  if "allow_random_backbones" in config.train:
    r("train.allow_random_backbones", lambda v: isinstance(v, bool), "True or False")
  r("eval.fid_stats", lambda v: isinstance(v, str), "a .npz path or ''")
  r("eval.inception_image_size", lambda v: _is_int(v) and v >= 75,
    "an integer >= 75 (Inception-v3's smallest input; 299 for comparable FID)")
  r("eval.train_fid_images", lambda v: _is_int(v) and v >= 2, "an integer >= 2")
  r("eval.train_metric", lambda v: v in ("auto", "alignment", "fid", "none")
    and not (v == "alignment" and config.dataset != "shapes"),
    "'auto', 'fid', 'none', or 'alignment' (shapes only)")
  r("train.phases", lambda v: isinstance(v, str) and v and all(
      p.strip() in ("damsm", "stream", "gan") for p in v.split(",")),
    "a comma-separated subset of damsm,stream,gan")


def _check_shapes(r) -> None:
  from mirrorgan_jax.data import shapes  # pylint: disable=import-outside-toplevel
  r("data.shapes.seed", lambda v: _is_int(v) and v >= 0, "an integer >= 0")
  for f in ("train_size", "test_size", "test_heldout_size"):
    r(f"data.shapes.{f}", lambda v: _is_int(v) and v >= 2, "an integer >= 2")
  r("data.shapes.cache_mb", lambda v: v >= 0, "a number of megabytes >= 0")
  pairs = {(c, s) for c in shapes.COLORS for s in shapes.SHAPES}
  r("data.shapes.heldout",
    lambda v: all(tuple(p) in pairs for p in v) and len({tuple(p) for p in v}) < len(pairs),
    f"(colour, shape) pairs from {shapes.COLORS} x {shapes.SHAPES}, not all of them")


def stage_sizes(config) -> tuple[int, ...]:
  """Image side of every generator stage, e.g. (64, 128, 256)."""
  return tuple(config.model.base_size * 2**i for i in range(config.model.num_stages))


# ---------------------------------------------------------------------------
# Command-line mistakes: a config file, an override or a flag that cannot be
# used, as one message naming it (absl and ml_collections raise deep inside
# flag parsing, some of it while the flag is defined).


def _type_words(value) -> str:
  if isinstance(value, bool):
    return "True or False"
  if isinstance(value, int):
    return "an integer"
  if isinstance(value, float):
    return "a number"
  if isinstance(value, str):
    return "a string"
  if isinstance(value, (tuple, list)):
    return "a tuple"
  if hasattr(value, "keys"):
    return "a group of fields"
  return type(value).__name__


def _leaf_paths(node, prefix: str = "") -> list[str]:
  out = []
  for key in node.keys():
    value, path = node[key], f"{prefix}{key}"
    out.append(path)
    if hasattr(value, "keys") and not isinstance(value, type):
      out.extend(_leaf_paths(value, path + "."))
  return out


def unknown_field(config, path: str, prefix: str = "config.", source: str = "") -> str | None:
  """Why the dotted `path` (what follows --config.) names no field of `config`,
  with the close field names (difflib); None when it names one. Fields are
  written as `prefix` + path; `source` names where the config comes from."""
  from ml_collections.config_flags import config_path  # pylint: disable=import-outside-toplevel
  import difflib  # pylint: disable=import-outside-toplevel
  try:
    parts = config_path.split(path)
  except ValueError:
    return f"{prefix}{path} is not a field name"
  source = f" in {source}" if source else ""
  node, where = config, ""
  for part in parts:
    if isinstance(part, int) and isinstance(node, (tuple, list)):
      if not -len(node) <= part < len(node):
        return f"{prefix}{where}[{part}]: index out of range ({len(node)} items{source})"
      node, where = node[part], f"{where}[{part}]"
      continue
    if not hasattr(node, "keys"):
      return f"{prefix}{where} is {_type_words(node)}{source}, it has no field {part!r}"
    if part in node:
      node, where = node[part], f"{where}.{part}" if where else str(part)
      continue
    missing = f"{where}.{part}" if where else str(part)
    names = sorted(str(k) for k in node.keys())
    close = [f"{where}.{c}" if where else c
             for c in difflib.get_close_matches(str(part), names, n=3, cutoff=0.6)]
    if not close:  # the same name in another group: g_lr -> optim.g_lr
      close = [p for p in _leaf_paths(config) if p.rsplit(".", 1)[-1] == part]
    if close:
      return (f"{prefix}{missing} does not exist{source}; did you mean "
              + " or ".join(prefix + c for c in close) + "?")
    shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
    group = f"{prefix}{where}" if where else prefix.rstrip(".")
    return f"{prefix}{missing} does not exist{source}; {group} has: {shown}"
  return None


def _config_argument(argv: list[str], flag: str) -> str | None:
  """The last --config=FILE (or --config FILE) of `argv`, as absl reads it."""
  found = None
  for i, arg in enumerate(argv):
    name, eq, value = arg.lstrip("-").partition("=")
    if not arg.startswith("-") or name != flag:
      continue
    if eq:
      found = value
    elif i + 1 < len(argv):
      found = argv[i + 1]
  return found


def _overrides(argv: list[str], flag: str) -> list[str]:
  out = []
  for arg in argv:
    m = re.match(rf"^--?(?:no)?{re.escape(flag)}\.([^=]*)", arg)
    if m:
      out.append(m.group(1))
  return out


def _load_config_file(spec: str):
  """(config, None) from a config file spec ('file.py' or 'file.py:arg'), or
  (None, why it cannot be loaded, without the file's name unless another file
  is to blame). The config file's own bugs raise."""
  import difflib  # pylint: disable=import-outside-toplevel
  import importlib.util  # pylint: disable=import-outside-toplevel
  import inspect  # pylint: disable=import-outside-toplevel
  path, _, arg = spec.partition(":")
  if not path:
    return None, "no config file given"
  if not os.path.exists(path):
    here = os.path.dirname(path) or "."
    names = sorted(f for f in os.listdir(here) if f.endswith(".py")) if os.path.isdir(here) else []
    near = difflib.get_close_matches(os.path.basename(path), names, n=3)
    hint = ("; did you mean " + " or ".join(os.path.join(os.path.dirname(path), n)
                                             for n in near) + "?") if near else ""
    relative = "" if os.path.isabs(path) else f" (relative to {os.getcwd()})"
    return None, f"no such file{relative}{hint}"
  if os.path.isdir(path):
    return None, "a folder, not a config file"
  try:
    module_spec = importlib.util.spec_from_file_location("_config_to_diagnose", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
  except SyntaxError as e:
    where = "" if e.filename == path else f"{e.filename}, "
    return None, f"{where}line {e.lineno}: {e.msg}"
  except OSError as e:
    return None, f"cannot read it ({e.strerror or e})"
  get_config = getattr(module, "get_config", None)
  if not callable(get_config):
    return None, "defines no get_config() (a config file returns its ConfigDict from it)"
  args = [arg] if arg else []
  try:
    inspect.signature(get_config).bind(*args)
  except TypeError:
    return None, (f"get_config() takes no argument, got {arg!r} (after ':')" if arg
                  else "get_config() needs an argument: --config FILE:ARGUMENT")
  except ValueError:  # no signature to read: let the call tell
    pass
  config = get_config(*args)
  if config is None:
    return None, "get_config() returned None (a missing return?)"
  return config, None


def _field_value(config, path: str):
  from ml_collections.config_flags import config_path  # pylint: disable=import-outside-toplevel
  for part in config_path.split(path):
    config = config[part]
  return config


def flag_error_message(error: BaseException, argv: list[str], default_config: str | None = None,
                       flag: str | None = "config") -> str | None:
  """One message for `error`, raised while absl parsed `argv` (with a config
  flag `flag` from ml_collections whose default file is `default_config`; None:
  no config flag), when it is the user's mistake: an unknown or misspelled
  field, a value of the wrong type, a config file that is missing or broken, an
  unknown or missing flag. None for anything else (a bug: its traceback is kept)."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  try:
    argv = flags.FLAGS.read_flags_from_files(list(argv), force_gnu=False)
  except flags.Error as e:
    return str(e)
  given = _config_argument(argv[1:], flag) if flag else None
  spec = (given or default_config) if flag else None
  option = f"--{flag} {spec}" + ("" if given else " (the default)")
  config = None
  if spec is not None:
    try:
      config, why = _load_config_file(spec)
    except Exception:  # pylint: disable=broad-except  (a bug in the config file)
      config, why = None, None
    if why is not None:
      return f"{option}: {why}"
  if isinstance(error, (OSError, AttributeError, KeyError, IndexError, TypeError, ValueError)):
    if config is None:
      return None
    for path in _overrides(argv[1:], flag):
      why = unknown_field(config, path, f"--{flag}.", spec)
      if why is not None:
        return why
    return None
  if not isinstance(error, flags.Error):
    return None
  text = str(error)
  m = re.match(r"flag --(\w+)=None: Flag --\w+ must have a value other than None", text)
  if m:
    return f"--{m.group(1)} is required"
  m = flag and re.match(rf"flag --{re.escape(flag)}\.(\S+?)=(.*?): (.*)", text, re.S)
  if m and config is not None:
    path, value, reason = m.groups()
    try:
      current = _field_value(config, path)
      want = _type_words(current)
      if hasattr(current, "keys"):
        want += f" (set them one by one: --{flag}.{path}.FIELD=VALUE)"
      else:
        want += f", like the config's {current!r}"
    except Exception:  # pylint: disable=broad-except
      want = "a value of the field's type"
    reason = re.sub(r"^\('(.*?)', .*\)$", r"\1", reason.strip())  # absl's bool error
    return f"--{flag}.{path}={value}: expected {want} ({reason})"
  return text.removeprefix("flag ")


def sentence_code(config) -> str:
  """`text.sentence_code`; "states" (official) in configs saved before it existed."""
  return config.text.get("sentence_code", SENTENCE_CODES[0])
