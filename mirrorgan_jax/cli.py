"""Command-line plumbing the programs share: console entry points
(pyproject.toml's [project.scripts]) and absl flag parsing that turns a
user's mistake into one message.

The absl programs' entry points run their module exactly as `python -m`
does, so flags, --help (the module's docstring and its flags) and exit
status are the same either way:

  mirrorgan-train     = python train.py (python -m mirrorgan_jax.train_main)
  mirrorgan-convert   = python -m mirrorgan_jax.convert
  mirrorgan-prepare   = python -m mirrorgan_jax.data.prepare

(The argparse programs, generate, evaluate and export, are entry points
themselves: their main(argv=None) reads sys.argv and returns the status.)
"""

import os
import runpy
import sys
from typing import Callable

USAGE_ERROR = 2  # the exit status of a user's mistake


def _run_module(name: str) -> None:
  # alter_sys: the module is __main__ while it runs, as under `python -m`;
  # absl lists in --help the flags its __main__ defines, and prints its docstring.
  runpy.run_module(name, run_name="__main__", alter_sys=True)


def train() -> None:
  _run_module("mirrorgan_jax.train_main")


def convert() -> None:
  _run_module("mirrorgan_jax.convert")


def prepare() -> None:
  _run_module("mirrorgan_jax.data.prepare")


def default_config(name: str) -> str:
  """configs/<name> of the checkout we run in, else the installed one."""
  local = os.path.join("configs", name)
  try:
    import configs  # pylint: disable=import-outside-toplevel
  except ImportError:
    return local
  return local if os.path.isfile(local) else os.path.join(os.path.dirname(configs.__file__), name)


def fail(message: str):
  """A user's mistake: the message, exit status 2, no traceback."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(USAGE_ERROR)


def folder_problem(flag: str, value: str) -> str | None:
  """Why `value`, given as `flag`, cannot be a folder this program writes in
  (created when missing), or None. Creates nothing."""
  if not value.strip():
    return f"{flag} is empty"
  path = os.path.abspath(os.path.expanduser(value))
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  where = "" if existing == path else f" cannot be created: {existing}"
  if not os.path.isdir(existing):
    return f"{flag} {value}:{where} is a file, not a folder"
  if not os.access(existing, os.W_OK | os.X_OK):
    return f"{flag} {value}:{where} is not writable"
  return None


def config_flags_parser(define: Callable[[], None], default: str, program: str
                        ) -> Callable[[list[str]], list[str]]:
  """An absl `flags_parser` for a program with a `--config` file flag:
  `define()` defines the flags (ml_collections loads the default config and
  applies the --config.x overrides as it is defined, so that happens here,
  where its errors become messages); a misspelled field, a missing or broken
  config file, a value of the wrong type or an unknown flag is one message
  (`program --helpshort` suggested for flags), anything else keeps its traceback."""
  from absl import flags  # pylint: disable=import-outside-toplevel

  def parse(argv: list[str]) -> list[str]:
    from mirrorgan_jax import config_check  # pylint: disable=import-outside-toplevel
    try:
      define()
      rest = flags.FLAGS(argv)
      config = flags.FLAGS.config  # a config file that failed to load raises on first use
      if config is None or not hasattr(config, "keys"):
        raise TypeError(f"the config file's get_config() returned {type(config).__name__}")
      config.keys()
    except Exception as e:  # pylint: disable=broad-except
      message = config_check.flag_error_message(e, argv, default)
      if message is None:
        raise
      fail(f"{message}\n({program} --helpshort lists the flags)"
           if isinstance(e, flags.UnrecognizedFlagError) else message)
    return rest

  return parse
