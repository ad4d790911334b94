"""Writes state dicts as `torch.save` does, without PyTorch: files that
`torch.load` (also with `weights_only=True`) and `load_state_dict` accept.

Both formats: the zip archive (default; `archive/data.pkl`, `archive/byteorder`,
`archive/version`, one raw little-endian record per tensor under
`archive/data/`) and the legacy stream (`legacy=True`: magic number, protocol,
system info, the pickle, the storage keys, then each storage's element count
and bytes). The pickle names torch's own globals (`torch._utils._rebuild_tensor_v2`,
`torch.FloatStorage`, `collections.OrderedDict`) and refers to storages by
persistent id, exactly as PyTorch writes it; each tensor gets its own storage.
"""

import collections
import os
import pickle
import struct
import zipfile

import numpy as np

from mirrorgan_jax.convert.torch_pickle import LEGACY_MAGIC, LEGACY_PROTOCOL

_STORAGE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
                  np.dtype(np.float16): "HalfStorage", np.dtype(np.int64): "LongStorage",
                  np.dtype(np.int32): "IntStorage", np.dtype(np.int16): "ShortStorage",
                  np.dtype(np.int8): "CharStorage", np.dtype(np.uint8): "ByteStorage",
                  np.dtype(np.bool_): "BoolStorage"}


class _Global:
  """A reference to `module.name`, pickled as a GLOBAL opcode (the object
  itself need not exist here)."""

  def __init__(self, module: str, name: str):
    self.module, self.name = module, name

  def __call__(self, *args):  # pickle wants a callable as a reduce function
    raise TypeError(f"{self.module}.{self.name} is only a name here")


class _Storage:
  def __init__(self, key: str, array: np.ndarray):
    self.key, self.array = key, array


class _Tensor:
  """Unpickles as torch._utils._rebuild_tensor_v2(storage, offset, size,
  stride, requires_grad, backward_hooks)."""

  def __init__(self, storage: _Storage, shape: tuple):
    self.storage, self.shape = storage, shape

  def __reduce__(self):
    strides, step = [], 1
    for n in reversed(self.shape):  # contiguous, in elements
      strides.insert(0, step)
      step *= n
    return (_Global("torch._utils", "_rebuild_tensor_v2"),
            (self.storage, 0, tuple(self.shape), tuple(strides), False,
             collections.OrderedDict()))


class _Pickler(pickle._Pickler):  # the Python pickler: its dispatch table is extensible
  dispatch = dict(pickle._Pickler.dispatch)

  def __init__(self, file, legacy: bool):
    super().__init__(file, protocol=2)
    self.legacy = legacy

  def _save_global_ref(self, obj: _Global) -> None:
    self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("utf-8"))

  dispatch[_Global] = _save_global_ref

  def persistent_id(self, obj):
    if not isinstance(obj, _Storage):
      return None
    kind = _Global("torch", _STORAGE_NAMES[obj.array.dtype])
    pid = ("storage", kind, obj.key, "cpu", int(obj.array.size))
    return pid + (None,) if self.legacy else pid


def _storages(state: dict) -> tuple[collections.OrderedDict, list[_Storage]]:
  tensors, storages = collections.OrderedDict(), []
  for i, (name, value) in enumerate(state.items()):
    array = np.asarray(value, order="C")
    if array.dtype not in _STORAGE_NAMES:
      raise TypeError(f"{name}: dtype {array.dtype} has no PyTorch storage type here")
    storage = _Storage(str(i), array.reshape(-1).astype(array.dtype.newbyteorder("<")))
    storages.append(storage)
    tensors[name] = _Tensor(storage, array.shape)
  return tensors, storages


def _pickle(obj, legacy: bool) -> bytes:
  import io  # pylint: disable=import-outside-toplevel
  buf = io.BytesIO()
  _Pickler(buf, legacy).dump(obj)
  return buf.getvalue()


def save(state: dict, path: str | os.PathLike, *, legacy: bool = False) -> None:
  """Writes `state` ({name: numpy array}, in order) to `path`; the file
  appears only once complete (written beside it, then renamed)."""
  path = os.fspath(path)
  tensors, storages = _storages(state)
  data = _pickle(tensors, legacy)
  tmp = f"{path}.tmp{os.getpid()}"
  try:
    if legacy:
      with open(tmp, "wb") as f:
        for header in (LEGACY_MAGIC, LEGACY_PROTOCOL,
                       {"protocol_version": LEGACY_PROTOCOL, "little_endian": True,
                        "type_sizes": {"short": 2, "int": 4, "long": 4}}):
          pickle.dump(header, f, protocol=2)
        f.write(data)
        pickle.dump([s.key for s in storages], f, protocol=2)
        for s in storages:
          f.write(struct.pack("<q", s.array.size))
          f.write(s.array.tobytes())
    else:
      name = os.path.splitext(os.path.basename(path))[0] or "archive"
      with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{name}/data.pkl", data)
        z.writestr(f"{name}/byteorder", "little")
        for s in storages:
          z.writestr(f"{name}/data/{s.key}", s.array.tobytes())
        z.writestr(f"{name}/version", "3\n")
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
