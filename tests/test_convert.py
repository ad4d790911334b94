"""The converters on their own: every kind round-trips exactly (ours -> PyTorch
names -> ours), the official key sets are produced, layouts are the official
ones (checked by hand on a conv, a linear and an LSTM), and weights that do not
fit are refused with names. Parity with the official modules' outputs is in
test_torch_parity.py."""

import json
import os

import numpy as np
import pytest

from configs import birds
from mirrorgan_jax import convert as cv
from mirrorgan_jax.convert import core, torch_pickle, torch_save

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "torch")


def small_config():
  """The fixtures' sizes (tests/fixtures/torch/manifest.json)."""
  c = birds.get_config()
  with open(os.path.join(FIXTURES, "manifest.json")) as f:
    for key, value in json.load(f)["config"].items():
      node = c
      *parents, leaf = key.split(".")
      for p in parents:
        node = node[p]
      node[leaf] = value
  return c


def random_variables(kind, config, seed=0):
  rng = np.random.default_rng(seed)
  nets = core._nets(kind, config)  # pylint: disable=protected-access

  def one(net):
    return core.unflatten({k: rng.normal(size=s).astype(np.float32)
                           for k, s in net.expected.items()})

  return tuple(one(n) for n in nets) if kind == "discriminators" else one(nets[0])


def official_layout(name):
  """{tensor name: shape} of an official module, as the fixture script saw it."""
  with open(os.path.join(FIXTURES, "manifest.json")) as f:
    entry = json.load(f)["entries"][name]
  return {n: tuple(s) for n, s, _ in entry["layout"]}


@pytest.mark.parametrize("kind", [k for k in cv.KINDS if k not in ("resnet152", "inception",
                                                                    "fid_inception")])
def test_every_kind_round_trips_exactly(kind, tmp_path):
  c = small_config()
  variables = random_variables(kind, c)
  n = {"discriminators": 3, "captioner": 2}.get(kind, 1)
  paths = [str(tmp_path / f"{kind}{i}.pth") for i in range(n)]
  deep = kind in ("captioner", "image_encoder")  # 100-240 MB: through memory, not files
  states = cv.to_torch(kind, variables, c, None if deep else paths if n > 1 else paths[0])
  back = cv.from_torch(kind, states if deep else paths if n > 1 else paths[0], c)
  pairs = zip(variables, back) if kind == "discriminators" else [(variables, back)]
  for a, b in pairs:
    fa, fb = core.flatten(a), core.flatten(b)
    assert set(fa) == set(fb)
    for k in fa:
      np.testing.assert_array_equal(fb[k], fa[k], err_msg=k)
  # ... and the dicts handed back are what was written.
  for p, s in zip(paths, states if n > 1 else [states]):
    if not deep:
      assert list(torch_pickle.state_dict(p)) == list(s)


@pytest.mark.parametrize("kind,entries", [
    ("text_encoder", ["text_encoder"]), ("generator", ["netG"]),
    ("discriminators", ["netD0", "netD1", "netD2"]), ("image_encoder", ["image_encoder"]),
    ("captioner", ["caption_cnn", "caption_rnn"])])
def test_exported_names_and_shapes_are_the_official_modules(kind, entries):
  c = small_config()
  states = cv.to_torch(kind, random_variables(kind, c), c)
  states = states if isinstance(states, (list, tuple)) else [states]
  for state, entry in zip(states, entries):
    assert {k: v.shape for k, v in state.items()} == official_layout(entry)


@pytest.mark.parametrize("kind,entry,skipped", [
    ("resnet152", "resnet152", ("fc.",)),  # ImageNet classifier: STREAM pools before it
    ("inception", "inception", ("AuxLogits.", "fc.")),  # the DAMSM encoder uses features only
    ("fid_inception", "fid_inception", ())])
def test_backbone_names_are_torchvisions(kind, entry, skipped):
  state = cv.to_torch(kind, random_variables(kind, None))
  theirs = official_layout(entry)
  ours = {k: v.shape for k, v in state.items()}
  assert ours == {k: v for k, v in theirs.items() if not k.startswith(skipped or ("-",))}
  assert all(any(k.startswith(p) for p in skipped) for k in set(theirs) - set(ours))


def test_layouts_by_hand():
  """conv OIHW -> HWIO, linear (out, in) -> (in, out), LSTM gate blocks i, f,
  g, o and the two biases summed, a 1x1 Conv2d -> our Dense."""
  c = small_config()
  state = cv.to_torch("generator", random_variables("generator", c), c)
  state = {k: np.random.default_rng(1).normal(size=v.shape).astype(v.dtype)
           for k, v in state.items()}
  g = core.flatten(cv.from_torch("generator", state, c))
  w = state["h_net2.residual.1.block.3.weight"]  # (O, I, 3, 3)
  np.testing.assert_array_equal(g["params/h_net2/residual1/Conv_1/kernel"][2, 0, 1, 3],
                                w[3, 1, 2, 0])
  w = state["ca_net.fc.weight"]
  np.testing.assert_array_equal(g["params/ca_net/fc/kernel"][5, 7], w[7, 5])
  w = state["h_net3.att.conv_context.weight"]  # (idf, cdf, 1, 1)
  np.testing.assert_array_equal(g["params/h_net3/att/conv_context/kernel"][9, 2], w[2, 9, 0, 0])
  np.testing.assert_array_equal(g["batch_stats/h_net1/fc_bn/var"],
                                state["h_net1.fc.1.running_var"])

  state = cv.to_torch("text_encoder", random_variables("text_encoder", c), c)
  rng = np.random.default_rng(2)
  state = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in state.items()}
  t = core.flatten(cv.from_torch("text_encoder", state, c))
  h = c.text.hidden_dim // 2
  for gate, i in zip("ifgo", range(4)):
    np.testing.assert_array_equal(t[f"params/lstm_bwd/i{gate}/kernel"],
                                  state["rnn.weight_ih_l0_reverse"][i * h:(i + 1) * h].T)
    np.testing.assert_array_equal(t[f"params/lstm_fwd/h{gate}/kernel"],
                                  state["rnn.weight_hh_l0"][i * h:(i + 1) * h].T)
    np.testing.assert_allclose(t[f"params/lstm_fwd/h{gate}/bias"],
                               (state["rnn.bias_ih_l0"] + state["rnn.bias_hh_l0"])[
                                   i * h:(i + 1) * h], rtol=0, atol=0)
  # Export writes the sum into bias_ih and zeros into bias_hh: the same LSTM.
  back = cv.to_torch("text_encoder", cv.from_torch("text_encoder", state, c), c)
  np.testing.assert_array_equal(back["rnn.bias_ih_l0"],
                                (state["rnn.bias_ih_l0"] + state["rnn.bias_hh_l0"]))
  assert not back["rnn.bias_hh_l0"].any()
  np.testing.assert_array_equal(back["rnn.weight_ih_l0"], state["rnn.weight_ih_l0"])


def test_weights_that_do_not_fit_are_refused_with_names(tmp_path):
  c = small_config()
  state = cv.to_torch("generator", random_variables("generator", c), c)
  missing = dict(state)
  del missing["h_net2.att.linear.bias"]
  with pytest.raises(cv.ConversionError, match=r"(?s)1 tensors missing .*h_net2.att.linear.bias"):
    cv.from_torch("generator", missing, c)
  extra = dict(state, **{"h_net4.conv.weight": np.zeros((3, 3, 1, 1), np.float32)})
  with pytest.raises(cv.ConversionError,
                     match=r"(?s)1 tensors with no place in G_NET.*h_net4.conv.weight \(3, 3, 1, 1\)"):
    cv.from_torch("generator", extra, c)
  wrong = dict(state, **{"img_net2.img.0.weight": np.zeros((3, 5, 3, 3), np.float32)})
  path = tmp_path / "netG.pth"
  torch_save.save(wrong, path)
  with pytest.raises(cv.ConversionError,
                     match=r"netG.pth: img_net2.img.0.weight has shape \(3, 5, 3, 3\); "
                           r"G_NET needs \(3, 4, 3, 3\)"):
    cv.from_torch("generator", str(path), c)
  # An older PyTorch wrote no num_batches_tracked: accepted.
  old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
  cv.from_torch("generator", old, c)
  with pytest.raises(cv.ConversionError, match=r"discriminators: 2 files for 3 stages"):
    cv.from_torch("discriminators", list(cv.to_torch(
        "discriminators", random_variables("discriminators", c), c))[:2], c)
  with pytest.raises(cv.ConversionError, match=r"captioner: 1 files given, 2 expected "
                                               r"\(the CAPTION_CNN then the CAPTION_RNN"):
    cv.from_torch("captioner", state, c)
  v = random_variables("generator", c)
  del v["params"]["img_net1"]
  with pytest.raises(cv.ConversionError, match=r"missing \['params/img_net1/conv/kernel'\]"):
    cv.to_torch("generator", v, c)
  with pytest.raises(cv.ConversionError, match="unknown kind 'netG'"):
    cv.from_torch("netG", state, c)


def test_configurations_without_an_official_counterpart_are_refused():
  c = small_config()
  c.stream.backbone = "small"
  with pytest.raises(cv.ConversionError, match="the official CAPTION_CNN is the resnet152"):
    cv.from_torch("captioner", [{}, {}], c)
  c.model.base_size = 16
  with pytest.raises(cv.ConversionError, match="G_NET's first stage is 64 px"):
    cv.from_torch("generator", {}, c)
