"""Reading and writing PyTorch .pth files without PyTorch (both of torch.save's
formats), and the command line for the Inception weights of FID. Files that
PyTorch itself wrote are read in test_torch_parity.py."""

import collections
import io
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from mirrorgan_jax import convert as cv
from mirrorgan_jax.convert import commands, torch_pickle, torch_save
from mirrorgan_jax.metrics import inception_net

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _state():
  rng = np.random.default_rng(0)
  return {"conv.weight": rng.normal(size=(4, 3, 2, 2)).astype(np.float32),
          "fc.weight": rng.normal(size=(5, 7)).astype(np.float32),
          "bn.num_batches_tracked": np.array(12, np.int64),
          "ids": np.arange(6, dtype=np.int64).reshape(2, 3),
          "half": np.linspace(-1, 1, 4).astype(np.float16)}


@pytest.mark.parametrize("legacy", [False, True])
def test_state_dict_round_trip(tmp_path, legacy):
  state = _state()
  path = tmp_path / "m.pth"
  torch_save.save(state, path, legacy=legacy)
  assert zipfile.is_zipfile(path) != legacy
  got = torch_pickle.state_dict(path)
  assert list(got) == list(state)
  for k, v in state.items():
    assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
    np.testing.assert_array_equal(got[k], v)


class _TransposedView(torch_save._Tensor):  # pylint: disable=protected-access
  """A tensor saved as the transpose of its storage (as a `.t()` view is)."""

  def __reduce__(self):
    rebuild, (storage, offset, size, _, *rest) = super().__reduce__()
    return rebuild, (storage, offset, size, (1, size[0])) + tuple(rest)


def test_strided_views_are_read_as_their_values():
  base = np.arange(12, dtype=np.float32).reshape(3, 4)  # stored row-major ...
  storage = torch_save._Storage("0", base.reshape(-1))  # pylint: disable=protected-access
  data = torch_save._pickle(  # pylint: disable=protected-access
      collections.OrderedDict(w=_TransposedView(storage, (4, 3))), legacy=False)
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w") as z:
    z.writestr("archive/data.pkl", data)
    z.writestr("archive/data/0", base.tobytes())
  path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"view{os.getpid()}.pth")
  with open(path, "wb") as f:
    f.write(buf.getvalue())
  try:
    np.testing.assert_array_equal(torch_pickle.state_dict(path)["w"], base.T)  # ... read as .t()
  finally:
    os.remove(path)


def test_code_in_the_pickle_is_refused(tmp_path):
  data = torch_save._pickle({"hook": torch_save._Global("posix", "system")},  # pylint: disable=protected-access
                            legacy=False)
  path = tmp_path / "evil.pth"
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", data)
  with pytest.raises(torch_pickle.TorchFileError, match=r"evil.pth: refuses to load posix\.system"):
    torch_pickle.load(path)


def test_damaged_files_are_reported(tmp_path):
  path = tmp_path / "m.pth"
  torch_save.save(_state(), path, legacy=True)
  data = path.read_bytes()
  (tmp_path / "cut.pth").write_bytes(data[:-3])
  with pytest.raises(torch_pickle.TorchFileError, match=r"cut.pth: storage '4' is truncated"):
    torch_pickle.load(tmp_path / "cut.pth")
  (tmp_path / "junk.pth").write_bytes(b"\x00\x01 not a pickle")
  with pytest.raises(torch_pickle.TorchFileError, match=r"junk.pth: damaged or not a PyTorch"):
    torch_pickle.load(tmp_path / "junk.pth")
  zpath = tmp_path / "z.pth"
  torch_save.save(_state(), zpath)
  with zipfile.ZipFile(zpath) as z, zipfile.ZipFile(tmp_path / "missing.pth", "w") as out:
    for name in z.namelist():
      if name != "z/data/1":
        out.writestr(name, z.read(name))
  with pytest.raises(torch_pickle.TorchFileError, match=r"record z/data/1 is missing"):
    torch_pickle.load(tmp_path / "missing.pth")


def test_a_failed_write_leaves_no_file(tmp_path):
  with pytest.raises(TypeError, match="complex64 has no PyTorch storage type"):
    torch_save.save({"a": np.zeros(2, np.float32), "b": np.zeros(2, np.complex64)},
                    tmp_path / "x.pth")
  assert os.listdir(tmp_path) == []


def _convert_cli(*args):
  return subprocess.run([sys.executable, "-m", "mirrorgan_jax.convert", *map(str, args)],
                        cwd=ROOT, capture_output=True, text=True, timeout=300,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})


def test_pytorch_fid_weights_convert_exactly(tmp_path):
  model = inception_net.model_for("pytorch-fid", 1008)
  variables = inception_net.random_weights(model, seed=1)
  src, out = tmp_path / "pt_inception.pth", tmp_path / "inception.npz"
  state = cv.to_torch("fid_inception", variables, path=src)
  assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
  assert state["fc.weight"].shape == (1008, 2048)
  assert commands.convert("fid_inception", [str(src)], None, str(out)) == [str(out)]
  net = inception_net.load(str(out), image_size=75)
  assert net.calibrated and "pytorch-fid" in net.label
  want, got = inception_net.flatten(variables), inception_net.flatten(net.variables)
  assert set(want) == set(got)
  for k in want:
    np.testing.assert_array_equal(np.asarray(got[k]), want[k], err_msg=k)


def test_converter_names_what_does_not_fit(tmp_path):
  model = inception_net.model_for("pytorch-fid", 1008)
  state = cv.to_torch("fid_inception", inception_net.random_weights(model))
  del state["Mixed_6e.branch_pool.bn.running_var"]
  with pytest.raises(cv.ConversionError, match=r"1 tensors missing"):
    cv.from_torch("fid_inception", state)
  state = cv.to_torch("fid_inception", inception_net.random_weights(model))
  state["Mixed_5b.branch1x1.conv.weight"] = np.zeros((64, 192, 3, 3), np.float32)
  src = tmp_path / "bad.pth"
  torch_save.save(state, src)
  r = _convert_cli("fid_inception", src, "--out", tmp_path / "o.npz")
  assert r.returncode == 2
  assert "bad.pth: Mixed_5b.branch1x1.conv.weight has shape (64, 192, 3, 3)" in r.stderr
  assert "Traceback" not in r.stderr
  assert not (tmp_path / "o.npz").exists()
