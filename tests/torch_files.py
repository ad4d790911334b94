"""Writes .pth files as torch.save does (zip and legacy formats), without
PyTorch: the pickle names torch's globals (torch._utils._rebuild_tensor_v2,
torch.FloatStorage, collections.OrderedDict) and refers to storages by
persistent id, exactly the structure torch.load reads."""

import collections
import io
import pickle
import struct
import sys
import types
import zipfile

import numpy as np

_STORAGE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
                  np.dtype(np.int64): "LongStorage", np.dtype(np.int32): "IntStorage",
                  np.dtype(np.uint8): "ByteStorage", np.dtype(np.float16): "HalfStorage"}


def _fake_torch():
  torch = types.ModuleType("torch")
  utils = types.ModuleType("torch._utils")

  def _rebuild_tensor_v2(*args):  # never called: only pickled by name
    raise AssertionError

  _rebuild_tensor_v2.__module__ = "torch._utils"
  _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
  utils._rebuild_tensor_v2 = _rebuild_tensor_v2
  storages = {}
  for name in _STORAGE_NAMES.values():
    cls = type(name, (), {"__module__": "torch"})
    setattr(torch, name, cls)
    storages[name] = cls
  torch._utils = utils
  return torch, utils, storages


class _Storage:
  def __init__(self, key, array):
    self.key, self.array = key, array


class _Tensor:
  """Pickles as torch does: _rebuild_tensor_v2(storage, offset, size, stride, ...)."""

  def __init__(self, rebuild, storage, offset, shape, strides):
    self.rebuild, self.storage = rebuild, storage
    self.args = (offset, tuple(shape), tuple(strides), False, collections.OrderedDict())

  def __reduce__(self):
    return self.rebuild, (self.storage,) + self.args


def _tensors(state, rebuild, transposed):
  """{name: _Tensor}; names in `transposed` are stored as the transpose of a
  contiguous storage (a non-contiguous tensor, as a .t() view saves)."""
  out, storages = collections.OrderedDict(), []
  for i, (name, value) in enumerate(state.items()):
    value = np.asarray(value)
    if name in transposed:
      base = np.ascontiguousarray(value.T)
      storage = _Storage(str(i), base.reshape(-1))
      strides = tuple(reversed([s // value.itemsize for s in base.strides]))
    else:
      base = np.ascontiguousarray(value)
      storage = _Storage(str(i), base.reshape(-1))
      strides = tuple(s // value.itemsize for s in base.strides) if value.ndim else ()
    storages.append(storage)
    out[name] = _Tensor(rebuild, storage, 0, value.shape, strides)
  return out, storages


def write_pth(path, state: dict, *, legacy: bool = False, transposed=(), extra_global=None):
  """Writes `state` ({name: numpy array}) as torch.save would. `extra_global`
  (a callable) is pickled into the file too, to test refusing it."""
  torch, utils, storage_types = _fake_torch()
  saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
  sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
  try:
    tensors, storages = _tensors(state, utils._rebuild_tensor_v2, set(transposed))
    obj = tensors if extra_global is None else {"weights": tensors, "hook": extra_global}
    buf = io.BytesIO()

    class Pickler(pickle.Pickler):
      def persistent_id(self, o):
        if isinstance(o, _Storage):
          kind = storage_types[_STORAGE_NAMES[o.array.dtype]]
          if legacy:
            return ("storage", kind, o.key, "cpu", o.array.size, None)
          return ("storage", kind, o.key, "cpu", o.array.size)
        return None

    Pickler(buf, protocol=2).dump(obj)
  finally:
    for k, v in saved.items():
      if v is None:
        sys.modules.pop(k, None)
      else:
        sys.modules[k] = v
  if legacy:
    with open(path, "wb") as f:
      for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
        pickle.dump(header, f, protocol=2)
      f.write(buf.getvalue())
      pickle.dump([s.key for s in storages], f, protocol=2)
      for s in storages:
        f.write(struct.pack("<q", s.array.size))
        f.write(s.array.astype(s.array.dtype.newbyteorder("<")).tobytes())
  else:
    with zipfile.ZipFile(path, "w") as z:
      z.writestr("archive/data.pkl", buf.getvalue())
      z.writestr("archive/byteorder", "little")
      for s in storages:
        z.writestr(f"archive/data/{s.key}", s.array.tobytes())
