"""Where each of our modules lives in the official PyTorch state dicts.

One function per network maps a module path of our Flax variables (the
path below `params` / `batch_stats`, as a tuple) to a `Target`: the PyTorch
module name, and the file it lives in when a kind spans several files. The
layer type (conv, linear, BatchNorm, embedding, LSTM) and so the tensor names
and layouts follow from the variables themselves (`core.py`).

Official names: qiaott/MirrorGAN `model.py` (G_NET, D_NET64/128/256,
CAPTION_CNN, CAPTION_RNN; RNN_ENCODER and CNN_ENCODER as AttnGAN's),
torchvision's resnet152 and inception_v3, pytorch-fid's FID Inception.
"""

import dataclasses
import re

# The Sequential indices inside the official blocks.
_TRUNK_CONV = (0, 2, 5, 8)  # encode_image_by_16times: conv, lrelu, conv, bn, lrelu, ...
_TRUNK_BN = (None, 3, 6, 9)
_RES_BLOCK = {"Conv_0": 0, "BatchNorm_0": 1, "Conv_1": 3, "BatchNorm_1": 4}
_UP_BLOCK = {"Conv_0": 1, "BatchNorm_0": 2}  # Upsample, conv3x3, BatchNorm, GLU
_RESNET_SEQUENTIAL = {"conv1": 0, "bn1": 1, "layer1": 4, "layer2": 5, "layer3": 6, "layer4": 7}


@dataclasses.dataclass(frozen=True)
class Target:
  name: str  # the PyTorch module, e.g. "h_net2.att.conv_context"
  file: int = 0  # which of the kind's state dicts
  conv1x1: bool = False  # our Dense is a 1x1 Conv2d there
  lstm_suffix: str = ""  # "_reverse": the backward direction of a bidirectional LSTM


class NoPlace(KeyError):
  """A module of ours with no official counterpart."""


def text_encoder(path: tuple) -> Target:
  """AttnGAN's RNN_ENCODER."""
  match path:
    case ("embedding",):
      return Target("encoder")
    case ("lstm_fwd",):
      return Target("rnn")
    case ("lstm_bwd",):
      return Target("rnn", lstm_suffix="_reverse")
  raise NoPlace(path)


def inception(path: tuple) -> Target:
  """torchvision's Inception3 (and pytorch-fid's, which keeps its names)."""
  return Target(".".join(path))


def image_encoder(path: tuple) -> Target:
  """AttnGAN's CNN_ENCODER: the Inception blocks as its own attributes."""
  if path[0] == "inception":
    return inception(path[1:])
  if path in (("emb_features",), ("emb_cnn_code",)):
    return Target(path[0])
  raise NoPlace(path)


def resnet(path: tuple, sequential: bool = False, prefix: str = "") -> Target:
  """torchvision's ResNet (`layer3_17` is `layer3.17`); `sequential`: as
  CAPTION_CNN holds it, `nn.Sequential(*children[:-1])` (`resnet.6.17`)."""
  head, *rest = path
  m = re.fullmatch(r"(layer\d)_(\d+)", head)
  top, block = (m.group(1), m.group(2)) if m else (head, None)
  if top not in _RESNET_SEQUENTIAL:
    raise NoPlace(path)
  name = str(_RESNET_SEQUENTIAL[top]) if sequential else top
  if block is not None:
    if len(rest) != 1:
      raise NoPlace(path)
    leaf = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}.get(
        rest[0], rest[0])
    name = f"{name}.{block}.{leaf}"
  return Target(prefix + name)


def captioner(path: tuple) -> Target:
  """CAPTION_CNN (file 0) and CAPTION_RNN (file 1)."""
  match path:
    case ("encoder", "resnet", *rest):
      return resnet(tuple(rest), sequential=True, prefix="resnet.")
    case ("encoder", ("linear" | "bn") as name):
      return Target(name)
    case ("decoder", ("embed" | "lstm" | "linear") as name):
      return Target(name, file=1)
  raise NoPlace(path)


def generator(path: tuple) -> Target:
  """G_NET."""
  match path:
    case ("ca_net", "fc"):
      return Target("ca_net.fc")
    case ("h_net1", "fc"):
      return Target("h_net1.fc.0")
    case ("h_net1", "fc_bn"):
      return Target("h_net1.fc.1")
    case (stage, up, layer) if re.fullmatch(r"upsample\d*", up) and layer in _UP_BLOCK:
      return Target(f"{stage}.{up}.{_UP_BLOCK[layer]}")
    case (stage, "att", "conv_context"):
      return Target(f"{stage}.att.conv_context", conv1x1=True)
    case (stage, "att", ("linear" | "conv_sentence_vis") as name):
      return Target(f"{stage}.att.{name}")
    case (img, "conv") if re.fullmatch(r"img_net\d+", img):
      return Target(f"{img}.img.0")
    case (stage, "conv"):
      return Target(f"{stage}.conv")
    case (stage, res, layer) if re.fullmatch(r"residual\d+", res) and layer in _RES_BLOCK:
      return Target(f"{stage}.residual.{res[len('residual'):]}.block.{_RES_BLOCK[layer]}")
  raise NoPlace(path)


def discriminator(n_extra: int):
  """D_NET64 (n_extra 0), D_NET128 (1), D_NET256 (2): the trunk's extra
  down-blocks are img_code_s32, s64, ...; its 3x3 convs img_code_s<last>_1, _2."""
  last = 16 * 2**n_extra

  def names(path: tuple) -> Target:
    match path:
      case ("trunk", layer):
        if m := re.fullmatch(r"down(\d)(_bn)?", layer):
          i, bn = int(m.group(1)), bool(m.group(2))
          index = (_TRUNK_BN if bn else _TRUNK_CONV)[i]
          if index is not None:
            return Target(f"img_code_s16.{index}")
        if m := re.fullmatch(r"extra_down(\d)(_bn)?", layer):
          return Target(f"img_code_s{32 * 2**int(m.group(1))}.{1 if m.group(2) else 0}")
        if m := re.fullmatch(r"extra_conv(\d)(_bn)?", layer):
          return Target(f"img_code_s{last}_{int(m.group(1)) + 1}.{1 if m.group(2) else 0}")
      case ("uncond", "outlogits"):
        return Target("UNCOND_DNET.outlogits.0")
      case ("cond", "outlogits"):
        return Target("COND_DNET.outlogits.0")
      case ("cond", "joint_conv"):
        return Target("COND_DNET.jointConv.0")
      case ("cond", "joint_bn"):
        return Target("COND_DNET.jointConv.1")
    raise NoPlace(path)

  return names
