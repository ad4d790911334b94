"""Reads PyTorch `.pth` / `.pt` files (state dicts) into numpy, without PyTorch.

Both of `torch.save`'s formats: the zip archive (PyTorch >= 1.6: `data.pkl`
plus one raw little-endian record per storage) and the legacy stream (magic
number, protocol, system info, the pickle, the storage keys, then each
storage's element count and raw bytes). Unpickling is restricted to what a
state dict needs (OrderedDict, tensor rebuilding, storage types): any other
global is refused with its name, so a file cannot run code on load.
"""

import collections
import io
import os
import pickle
import struct
import zipfile

import ml_dtypes
import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_, "UntypedStorage": np.uint8,
}


class TorchFileError(ValueError):
  """A .pth file that cannot be read (damaged, unsupported, or unsafe)."""


class _StorageType:
  def __init__(self, name):
    self.name, self.dtype = name, np.dtype(_STORAGE_DTYPES[name])


def _rebuild_tensor(storage, offset, size, stride, *unused):
  """torch._utils._rebuild_tensor(_v2): a strided view of a 1-d storage, copied."""
  size, stride = tuple(size), tuple(stride)
  if not size:
    return np.array(storage[offset])
  need = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
  if min(size) > 0 and need > len(storage):
    raise TorchFileError(f"tensor of size {size} at offset {offset} runs past its storage "
                         f"of {len(storage)} elements")
  item = storage.dtype.itemsize
  view = np.lib.stride_tricks.as_strided(storage[offset:], size, [s * item for s in stride])
  return np.array(view)


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, *unused):
  return data


_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "Size"): tuple,
}
_REBUILD = {("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_tensor_v2")}


class _Unpickler(pickle.Unpickler):
  def __init__(self, file, path, load_storage, rebuild=_rebuild_tensor):
    super().__init__(file, encoding="latin1")
    self._path, self._load_storage, self._rebuild = path, load_storage, rebuild

  def find_class(self, module, name):
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(name)
    if (module, name) in _REBUILD:
      return self._rebuild
    if (module, name) in _GLOBALS:
      return _GLOBALS[(module, name)]
    raise TorchFileError(f"{self._path}: refuses to load {module}.{name} (a state dict of "
                         f"tensors needs no such object; the file may run code when loaded)")

  def persistent_load(self, pid):
    if not isinstance(pid, tuple) or not pid or (pid[0] not in ("storage", b"storage")):
      raise TorchFileError(f"{self._path}: unknown persistent id {pid!r}")
    return self._load_storage(pid[1:])


def _zip_load(path: str) -> object:
  with zipfile.ZipFile(path) as z:
    names = z.namelist()
    pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pkl) != 1:
      raise TorchFileError(f"{path}: a zip archive without one data.pkl (found {pkl})")
    prefix = pkl[0][:-len("data.pkl")]
    order = z.read(prefix + "byteorder").decode() if prefix + "byteorder" in names else "little"
    cache = {}

    def load_storage(data):
      storage_type, key, _location, numel = data
      if key not in cache:
        record = f"{prefix}data/{key}"
        if record not in names:
          raise TorchFileError(f"{path}: storage record {record} is missing")
        dtype = storage_type.dtype.newbyteorder("<" if order == "little" else ">")
        raw = z.read(record)
        if len(raw) < numel * dtype.itemsize:
          raise TorchFileError(f"{path}: storage {record} holds {len(raw)} bytes, "
                               f"{numel} x {dtype.itemsize} expected")
        cache[key] = np.frombuffer(raw, dtype, numel).astype(storage_type.dtype)
      return cache[key]

    return _Unpickler(io.BytesIO(z.read(pkl[0])), path, load_storage).load()


def _legacy_load(path: str) -> object:
  with open(path, "rb") as f:
    def plain():
      return _Unpickler(f, path, lambda d: (_ for _ in ()).throw(
          TorchFileError(f"{path}: storage outside the main pickle"))).load()

    if plain() != LEGACY_MAGIC:
      raise TorchFileError(f"{path}: not a PyTorch file (neither a zip archive nor the "
                           f"legacy format's magic number)")
    if (version := plain()) != LEGACY_PROTOCOL:
      raise TorchFileError(f"{path}: legacy protocol version {version} is not supported")
    plain()  # system info
    storages, views = {}, []

    def load_storage(data):
      storage_type, key, _location, numel, view = data
      if key not in storages:
        storages[key] = [storage_type.dtype, numel, None]
      holder = [None]
      views.append((holder, key, view))
      return _Lazy(holder)

    # Tensors are rebuilt while unpickling, before the storages' bytes (which
    # follow the pickle) are read: unpickle into placeholders, then resolve.
    tree = _Unpickler(f, path, load_storage, rebuild=_lazy_rebuild).load()
    keys = plain()
    for key in keys:
      if key not in storages:
        raise TorchFileError(f"{path}: storage key {key!r} is not used by the pickle")
      dtype, numel, _ = storages[key]
      header = f.read(8)
      if len(header) != 8:
        raise TorchFileError(f"{path}: truncated before storage {key!r}")
      (count,) = struct.unpack("<q", header)
      raw = f.read(count * dtype.itemsize)
      if count != numel or len(raw) != count * dtype.itemsize:
        raise TorchFileError(f"{path}: storage {key!r} is truncated or mis-sized")
      storages[key][2] = np.frombuffer(raw, dtype.newbyteorder("<"), count).astype(dtype)
    for holder, key, view in views:
      data = storages[key][2]
      if data is None:
        raise TorchFileError(f"{path}: storage {key!r} has no data")
      if view is not None:
        _, offset, size = view
        data = data[offset:offset + size]
      holder[0] = data
    return _resolve(tree)


class _Lazy:
  """A storage whose bytes come after the pickle (legacy format)."""

  def __init__(self, holder):
    self.holder = holder


class _LazyTensor:
  def __init__(self, args):
    self.args = args


def _lazy_rebuild(storage, *args):
  return _LazyTensor((storage,) + args)


def _resolve(tree):
  if isinstance(tree, _LazyTensor):
    storage, *args = tree.args
    return _rebuild_tensor(storage.holder[0], *args)
  if isinstance(tree, dict):
    return type(tree)((k, _resolve(v)) for k, v in tree.items())
  if isinstance(tree, (list, tuple)):
    return type(tree)(_resolve(v) for v in tree)
  return tree


def load(path: str | os.PathLike) -> object:
  """The object `torch.save` wrote (typically a state dict), tensors as numpy."""
  path = os.fspath(path)
  try:
    if zipfile.is_zipfile(path):
      return _zip_load(path)
    return _legacy_load(path)
  except TorchFileError:
    raise
  except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, TypeError,
          KeyError, AttributeError, IndexError, struct.error) as e:
    raise TorchFileError(f"{path}: damaged or not a PyTorch file ({type(e).__name__}: {e})") from e


class StateDict(dict):
  """{name: array}, remembering the file it was read from (for messages)."""

  def __init__(self, items, path: str):
    super().__init__(items)
    self.path = path


def state_dict(path: str | os.PathLike) -> StateDict:
  """A flat {name: array} state dict; a checkpoint dict holding one under
  'state_dict' or 'model' is unwrapped."""
  obj = load(path)
  for key in ("state_dict", "model"):
    if isinstance(obj, dict) and isinstance(obj.get(key), dict):
      obj = obj[key]
  if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
    raise TorchFileError(f"{path}: not a state dict of tensors")
  return StateDict(obj, os.fspath(path))
