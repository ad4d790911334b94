"""Reading the AttnGAN pickles (captions, filenames, class ids) safely.

They are Python 2 pickles (protocol 2) that users download from third-party
mirrors. A pickle can name any importable callable and run it while loading,
so we refuse every global: what remains are the opcodes for lists, tuples,
dicts, strings, bytes, numbers, booleans and None, which is all these files
hold. Python 2 `str` objects are decoded as latin-1 (AttnGAN#15).
"""

import io
import os
import pickle
from typing import Any

ALLOWED = (list, tuple, dict, str, bytes, int, float, bool, type(None))


class UnsafePickleError(ValueError):
  """The pickle holds something other than plain containers and scalars."""


class _Restricted(pickle.Unpickler):

  def __init__(self, file, path: str):
    super().__init__(file, encoding="latin1")
    self._path = path

  def find_class(self, module, name):
    raise UnsafePickleError(
        f"{self._path}: refused to load: it references {module}.{name}; only "
        "lists, tuples, dicts, strings, bytes and numbers are accepted")

  def persistent_load(self, pid):
    raise UnsafePickleError(f"{self._path}: refused to load: persistent id {pid!r}")


def _check(obj, path: str) -> None:
  # Without globals, pickle can still build sets and bytearrays (protocols
  # 4 and 5); this check keeps the guarantee independent of opcode details.
  if not isinstance(obj, ALLOWED):
    raise UnsafePickleError(f"{path}: refused to load: holds a {type(obj).__name__}")
  if isinstance(obj, dict):
    for k, v in obj.items():
      _check(k, path)
      _check(v, path)
  elif isinstance(obj, (list, tuple)):
    for v in obj:
      _check(v, path)


def load(path: str | os.PathLike) -> Any:
  """Loads a pickle of plain data; anything else is refused, naming the file."""
  path = os.fspath(path)
  try:
    with open(path, "rb") as f:
      data = f.read()
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{path}: no such file") from e
  try:
    obj = _Restricted(io.BytesIO(data), path).load()
  except UnsafePickleError:
    raise
  except Exception as e:  # truncated or not a pickle at all
    raise ValueError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from e
  _check(obj, path)
  return obj


def dump(obj: Any, path: str | os.PathLike) -> None:
  """Writes plain data as a protocol-2 pickle, readable by the AttnGAN tools."""
  _check(obj, os.fspath(path))
  tmp = f"{os.fspath(path)}.tmp"
  with open(tmp, "wb") as f:
    pickle.dump(obj, f, protocol=2)
  os.replace(tmp, path)
