"""Validation of a configuration before anything is built: a value out of range
is reported with its full field name, the value and what is allowed."""

from typing import Any, Callable

DTYPES = ("float32", "bfloat16")
STREAM_BACKBONES = ("resnet152", "small")
IMAGE_ENCODER_BACKBONES = ("inception_v3", "small")
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
  for f in ("ngf", "ndf", "z_dim", "condition_dim", "num_stages"):
    r(f"model.{f}", _positive_int, "a positive integer")
  r("model.ca_normalize_input", lambda v: isinstance(v, bool), "True or False")
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
  for f in ("stream_weight", "kl_weight"):
    r(f"loss.{f}", lambda v: v >= 0, "a number >= 0")
  r("ema_decay", lambda v: 0.0 <= v <= 1.0, "in [0, 1]")
  r("dataset", lambda v: v in DATASETS, f"one of {DATASETS}")
  r("data.data_dir", lambda v: isinstance(v, str) and v, "a folder path")
  r("data.manual_dir", lambda v: isinstance(v, str), "a folder path or ''")
  r("data.workers", lambda v: _is_int(v) and v >= 0, "an integer >= 0")
  r("data.prefetch", _positive_int, "a positive integer")
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
  for f in ("log_every", "checkpoint_every", "sample_every"):
    r(f"train.{f}", lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0: never)")
  r("train.nan_policy", lambda v: v in ("stop", "skip"), "'stop' or 'skip'")
  r("train.distributed", lambda v: v in ("auto", "yes", "no"), "'auto', 'yes' or 'no'")
  r("eval.inception_weights", lambda v: isinstance(v, str), "a .npz path or ''")
  # Absent from configs saved before the PyTorch weights fields existed.
  for f in ("image_encoder.inception_weights", "stream.resnet_weights"):
    if f.split(".")[1] in config[f.split(".")[0]]:
      r(f, lambda v: isinstance(v, str), "a .pth or .npz path, or ''")
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
  pairs = {(c, s) for c in shapes.COLORS for s in shapes.SHAPES}
  r("data.shapes.heldout",
    lambda v: all(tuple(p) in pairs for p in v) and len({tuple(p) for p in v}) < len(pairs),
    f"(colour, shape) pairs from {shapes.COLORS} x {shapes.SHAPES}, not all of them")


def stage_sizes(config) -> tuple[int, ...]:
  """Image side of every generator stage, e.g. (64, 128, 256)."""
  return tuple(config.model.base_size * 2**i for i in range(config.model.num_stages))
