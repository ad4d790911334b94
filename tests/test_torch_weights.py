"""Reading PyTorch .pth files without PyTorch, and converting pytorch-fid's
Inception weights: files written by the tests in torch.save's two formats."""

import os
import zipfile

import numpy as np
import pytest

from mirrorgan_jax import convert_inception, torch_pickle
from mirrorgan_jax.metrics import inception_net
from tests.torch_files import write_pth


def _state():
  rng = np.random.default_rng(0)
  return {"conv.weight": rng.normal(size=(4, 3, 2, 2)).astype(np.float32),
          "fc.weight": rng.normal(size=(5, 7)).astype(np.float32),
          "bn.num_batches_tracked": np.array(12, np.int64),
          "ids": np.arange(6, dtype=np.int64).reshape(2, 3)}


@pytest.mark.parametrize("legacy", [False, True])
def test_state_dict_round_trip(tmp_path, legacy):
  state = _state()
  path = tmp_path / "m.pth"
  write_pth(path, state, legacy=legacy, transposed={"fc.weight"})
  assert zipfile.is_zipfile(path) != legacy
  got = torch_pickle.state_dict(path)
  assert list(got) == list(state)
  for k, v in state.items():
    assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
    np.testing.assert_array_equal(got[k], v)


def test_code_in_the_pickle_is_refused(tmp_path):
  path = tmp_path / "evil.pth"
  write_pth(path, _state(), extra_global=os.system)
  with pytest.raises(torch_pickle.TorchFileError,
                     match=r"evil.pth: refuses to load (posix|os)\.system"):
    torch_pickle.load(path)


def test_damaged_files_are_reported(tmp_path):
  path = tmp_path / "m.pth"
  write_pth(path, _state(), legacy=True)
  data = path.read_bytes()
  (tmp_path / "cut.pth").write_bytes(data[:-10])
  with pytest.raises(torch_pickle.TorchFileError, match=r"cut.pth: storage '3' is truncated"):
    torch_pickle.load(tmp_path / "cut.pth")
  (tmp_path / "junk.pth").write_bytes(b"\x00\x01 not a pickle")
  with pytest.raises(torch_pickle.TorchFileError, match=r"junk.pth: damaged or not a PyTorch"):
    torch_pickle.load(tmp_path / "junk.pth")
  zpath = tmp_path / "z.pth"
  write_pth(zpath, _state())
  with zipfile.ZipFile(zpath) as z, zipfile.ZipFile(tmp_path / "missing.pth", "w") as out:
    for name in z.namelist():
      if name != "archive/data/1":
        out.writestr(name, z.read(name))
  with pytest.raises(torch_pickle.TorchFileError, match=r"record archive/data/1 is missing"):
    torch_pickle.load(tmp_path / "missing.pth")


def _as_pytorch_fid(variables) -> dict:
  """Our variables written back under torchvision's names and layouts."""
  out = {}
  for key, value in inception_net.flatten(variables).items():
    col, *module, leaf = key.split("/")
    name = ".".join(module)
    value = np.asarray(value)
    if leaf == "kernel" and module == ["fc"]:
      out["fc.weight"] = value.T
    elif leaf == "kernel":
      out[f"{name}.weight"] = value.transpose(3, 2, 0, 1)
    else:
      torch_leaf = {"scale": "weight", "bias": "bias", "mean": "running_mean",
                    "var": "running_var"}[leaf]
      out[f"{name}.{torch_leaf}"] = value
      if leaf == "var":
        out[f"{name}.num_batches_tracked"] = np.array(0, np.int64)
  return out


def test_pytorch_fid_weights_convert_exactly(tmp_path):
  model = inception_net.model_for("pytorch-fid", 1008)
  variables = inception_net.random_weights(model, seed=1)
  state = _as_pytorch_fid(variables)
  assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
  assert state["fc.weight"].shape == (1008, 2048)
  src, out = tmp_path / "pt_inception.pth", tmp_path / "inception.npz"
  write_pth(src, state)
  assert convert_inception.main([str(src), str(out)]) == 0
  net = inception_net.load(str(out), image_size=75)
  assert net.calibrated and "pytorch-fid" in net.label
  want, got = inception_net.flatten(variables), inception_net.flatten(net.variables)
  assert set(want) == set(got)
  for k in want:
    np.testing.assert_array_equal(np.asarray(got[k]), want[k], err_msg=k)


def test_converter_names_what_does_not_fit(tmp_path, capsys):
  model = inception_net.model_for("pytorch-fid", 1008)
  state = _as_pytorch_fid(inception_net.random_weights(model))
  del state["Mixed_6e.branch_pool.bn.running_var"]
  with pytest.raises(inception_net.InceptionWeightsError, match=r"no tensor for 1 variables"):
    convert_inception.convert(state)
  state = _as_pytorch_fid(inception_net.random_weights(model))
  state["Mixed_5b.branch1x1.conv.weight"] = np.zeros((64, 192, 3, 3), np.float32)
  src = tmp_path / "bad.pth"
  write_pth(src, state)
  assert convert_inception.main([str(src), str(tmp_path / "o.npz")]) == 2
  err = capsys.readouterr().err
  assert "bad.pth: Mixed_5b.branch1x1.conv.weight has shape (64, 192, 3, 3)" in err
  assert not (tmp_path / "o.npz").exists()
