"""train.py keeps compiled programs in the workdir (train.compilation_cache),
so a resumed run skips XLA."""

import os
import subprocess
import sys

from configs import tiny
from mirrorgan_jax import train_main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_environment_or_an_empty_field_leaves_jax_as_it_is(monkeypatch, tmp_path):
  config = tiny.get_config()
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "chosen"))
  assert train_main.use_compilation_cache(config, str(tmp_path)) == ""
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
  config.train.compilation_cache = ""
  assert train_main.use_compilation_cache(config, str(tmp_path)) == ""


def test_compiled_programs_land_in_the_workdir_folder(tmp_path):
  """In a fresh process (JAX starts its cache once per process), without the
  suite's own cache in the environment."""
  code = f"""
import jax, jax.numpy as jnp, os
from configs import tiny
from mirrorgan_jax import train_main
c = tiny.get_config()
folder = train_main.use_compilation_cache(c, {str(tmp_path)!r})
assert folder == os.path.join({str(tmp_path)!r}, "xla_cache"), folder
c.train.compilation_cache = "/elsewhere/absolute"
assert train_main.use_compilation_cache(c, {str(tmp_path)!r}) == "/elsewhere/absolute"
jax.config.update("jax_compilation_cache_dir", folder)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.block_until_ready(jax.jit(lambda x: jnp.sin(x) * 3)(jnp.arange(4.0)))
print(sorted(os.listdir(folder)))
"""
  env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert os.listdir(tmp_path / "xla_cache"), out.stdout
