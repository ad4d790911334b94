"""`dtype=bfloat16` really computes in bf16: checked on the lowered StableHLO
of the tiny-config steps (GAN, DAMSM and STREAM pretraining), not only on the
dtypes of the state (that is test_gan_step's
test_bfloat16_compute_keeps_float32_parameters_optimizer_and_losses).

Every convolution must take and return bf16. Every dot_general must take two
bf16 operands (a float32 result is allowed: that is accumulation in float32,
`preferred_element_type`), except at the float32 sites listed below, each with
its reason and its exact count at the tiny config, so that a layer that loses
its `dtype=` (a new float32 matmul anywhere else) or a float32 site that grows
or vanishes fails here. docs/precision.md has the table.

The sites are recognised by the name stack XLA keeps in each op's location
(`Lowered.as_text(debug_info=True)`), e.g.
"jit(train_step)/transpose(jvp(Captioner))/decoder/while/body/.../lstm/hi/dot_general".
"""

import collections
import re

import jax
import numpy as np
import pytest

from configs import tiny
from mirrorgan_jax import factory, gan_state, gan_step, pretrain_steps
from mirrorgan_jax.batch import random_batch

# site -> (pattern on the op's name stack, why it stays float32)
FLOAT32_SITES = {
    "text encoder LSTM": (
        r"TextEncoder\b.*/lstm_(fwd|bwd)/",
        "STEM's recurrences: an error in the carry compounds over the words; the "
        "module has no dtype at all (frozen during the GAN phase, its outputs are "
        "cast to bf16 where the generator consumes them)"),
    "captioner LSTM": (
        r"Captioner\b.*/decoder/(while/body/.*/)?lstm/",
        "STREAM's decoder recurrence, for the same reason; the image embedding "
        "enters it in float32, the vocabulary projection after it is bf16"),
    "conditioning augmentation": (
        r"Generator\b.*/ca_net/fc/",
        "mu and logvar of the CA: exp(0.5 * logvar) amplifies a bf16 rounding "
        "of logvar, and the KL loss is computed from them"),
    "DAMSM matching scores": (
        r"(id,cd->ic|nd,td->nt|tn,nd->td)",
        "damsm.py's word/sentence similarities are losses, compared across the "
        "batch and reused for R-precision: float32 at Precision.HIGHEST"),
}

# Exact float32 dot_general counts per site at the tiny config (4 gates x
# (input, recurrent) kernels = 8 matmuls per LSTM step; both LSTMs scan over
# the words, so each step's body appears once).
EXPECTED_FLOAT32 = {
    "gan": {
        # 8 per direction x 2 directions x 2 calls (captions, wrong captions);
        # nn.RNN scans, so each call's body appears once. No backward: frozen.
        "text encoder LSTM": 32,
        # Forward 8. Backward towards the fake image only (the captioner is
        # frozen): 4 input-gate and 4 recurrent matmuls.
        "captioner LSTM": 16,
        # Forward, and the kernel gradient (the sentence is stop_gradient'ed).
        "conditioning augmentation": 2,
    },
    "damsm": {
        # Forward 16, backward 32 (input and carry gradients, kernel gradients).
        "text encoder LSTM": 48,
        # Three einsums, each forward + two operand gradients.
        "DAMSM matching scores": 9,
    },
    "stream": {
        # Forward 8, backward 8 towards the inputs + 8 kernel gradients.
        "captioner LSTM": 24,
    },
}

_TYPES = re.compile(r":\s*\((tensor<[^>]*>), (tensor<[^>]*>)\)\s*->\s*(tensor<[^>]*>)")
_LOC_DEF = re.compile(r'^(#loc\d*) = loc\("([^"]*)"', re.M)


def _element_type(tensor_type: str) -> str:
  return re.match(r"tensor<(?:[0-9?]+x)*(\w+)", tensor_type).group(1)


def ops(text: str, op: str) -> list[tuple[str, str, str, str]]:
  """(lhs, rhs, result element types, name stack) of every `stablehlo.<op>`."""
  names = dict(_LOC_DEF.findall(text))
  found = []
  for line in text.splitlines():
    if f"stablehlo.{op}" not in line:
      continue
    types = _TYPES.search(line)
    assert types, f"cannot read the types of: {line.strip()}"
    loc = re.search(r"loc\((#loc\d*)\)\s*$", line)
    found.append((*map(_element_type, types.groups()),
                  names.get(loc.group(1), "?") if loc else "?"))
  return found


def with_imagenet_backbones(config):
  """The birds/coco backbones (Inception-v3 for DAMSM, ResNet-152 for STREAM)
  at their smallest inputs: their resizes and trunks are code the small
  backbones do not run. Lowering only traces them."""
  config.image_encoder.backbone, config.image_encoder.image_size = "inception_v3", 75
  config.stream.backbone, config.stream.image_size = "resnet152", 64  # != the 32 px images
  return config


def lowered(config, kind: str, debug_info: bool = True) -> str:
  models = factory.create_models(config)
  init, make_step = {
      "gan": (gan_state.init_gan_state, gan_step.make_train_step),
      "damsm": (pretrain_steps.init_damsm_state, pretrain_steps.make_damsm_step),
      "stream": (pretrain_steps.init_stream_state, pretrain_steps.make_stream_step),
  }[kind]
  state = jax.eval_shape(lambda k: init(models, config, k), jax.random.key(0))
  batch = random_batch(config)
  batch["class_ids"] = np.arange(config.batch_size, dtype=np.int32)
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), batch)
  return jax.jit(make_step(models, config)).lower(
      state, batch, jax.random.key(0)).as_text(debug_info=debug_info)


def float32_sites(dots) -> tuple[collections.Counter, list[str]]:
  """Counts of the float32 dot_generals per known site, and the name stacks
  of those that match none."""
  counts, unknown = collections.Counter(), []
  for lhs, rhs, _, name in dots:
    if lhs == rhs == "bf16":
      continue
    sites = [s for s, (pattern, _) in FLOAT32_SITES.items() if re.search(pattern, name)]
    if len(sites) == 1:
      counts[sites[0]] += 1
    else:
      unknown.append(f"{lhs} x {rhs} at {name}")
  return counts, unknown


@pytest.fixture(scope="module")
def bf16_config():
  c = tiny.get_config()
  c.dtype = "bfloat16"
  return c


@pytest.mark.parametrize("kind, backbones", [
    ("gan", "small"), ("damsm", "small"), ("stream", "small"),
    # The STREAM captioner in the GAN step with ResNet-152, DAMSM with Inception-v3.
    ("gan", "imagenet"), ("damsm", "imagenet")])
def test_bf16_step_runs_every_conv_and_matmul_in_bf16_but_the_listed_sites(
    bf16_config, kind, backbones):
  config = bf16_config.copy_and_resolve_references()
  text = lowered(with_imagenet_backbones(config) if backbones == "imagenet" else config, kind)
  convs, dots = ops(text, "convolution"), ops(text, "dot_general")
  # STREAM's small CNN runs every conv as a matmul over patches on CPU
  # (layers.conv2d), so that step may have dots only.
  assert convs or (kind, backbones) == ("stream", "small"), (
      "no convolution found: the parser or the lowering changed")
  assert dots, "no dot_general found: the parser or the lowering changed"
  not_bf16 = [c for c in convs if c[:3] != ("bf16",) * 3]
  assert not not_bf16, f"{len(not_bf16)} of {len(convs)} convolutions not in bf16: {not_bf16[:5]}"

  counts, unknown = float32_sites(dots)
  assert not unknown, (f"{len(unknown)} float32 dot_generals outside the allowed sites "
                       "(a layer without dtype=?):\n" + "\n".join(unknown))
  assert dict(counts) == EXPECTED_FLOAT32[kind]
  n_bf16 = sum(lhs == rhs == "bf16" for lhs, rhs, _, _ in dots)
  assert n_bf16 > 0
  # A bf16 matmul returns bf16, or float32 where it accumulates in float32.
  assert all(out in ("bf16", "f32") for lhs, rhs, out, _ in dots if lhs == rhs == "bf16")


def test_float32_step_has_no_bf16_anywhere():
  """The float32 default path is untouched by the bf16 plumbing."""
  text = lowered(tiny.get_config(), "gan", debug_info=False)
  assert ops(text, "dot_general") and ops(text, "convolution")
  assert not re.search(r"[<x]bf16>", text)


def test_the_parser_reads_types_and_names():
  line = ('%7 = stablehlo.dot_general %5, %6, contracting_dims = [1] x [0] : '
          '(tensor<8x16xbf16>, tensor<16x1024xbf16>) -> tensor<8x1024xf32> loc(#loc9)\n'
          '#loc9 = loc("jit(f)/jvp(Generator)/ca_net/fc/dot_general"(#loc3))\n')
  dots = ops(line, "dot_general")
  assert dots == [("bf16", "bf16", "f32", "jit(f)/jvp(Generator)/ca_net/fc/dot_general")]
  counts, unknown = float32_sites([("f32", "f32", "f32", dots[0][3]),
                                   ("f32", "bf16", "f32", "jit(f)/Generator/h_net2/x")])
  assert counts == {"conditioning augmentation": 1}
  assert unknown == ["f32 x bf16 at jit(f)/Generator/h_net2/x"]
