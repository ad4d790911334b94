"""The installable package: pyproject.toml declares every third-party package
that mirrorgan_jax imports (so `pip install .` gives a library that imports),
with bounds the tested pins of requirements.txt satisfy, and each console
command names a function that can be called with no arguments."""

import ast
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import re
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Import name -> distribution name where they differ (checked against the
# installed distributions below, so a wrong entry fails rather than hides).
DISTRIBUTIONS = {"PIL": "pillow", "absl": "absl-py", "ml_collections": "ml-collections",
                 "orbax": "orbax-checkpoint", "tensorflow_datasets": "tensorflow-datasets"}
# Test tools, and packages pinned only for the versions their dependents pull.
NOT_RUNTIME = {"pytest", "pytest-xdist", "jaxlib", "chex"}


def _norm(name: str) -> str:
  return re.sub(r"[-_.]+", "-", name).lower()


def _project() -> dict:
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    return tomllib.load(f)["project"]


def _declared() -> dict:
  return {_norm(r.name): r for r in map(Requirement, _project().get("dependencies", []))}


def _third_party_imports() -> dict:
  """Top-level name of every absolute import in mirrorgan_jax/ -> a file
  importing it (imports inside functions included)."""
  found = {}
  package = os.path.join(ROOT, "mirrorgan_jax")
  for folder, _, files in sorted(os.walk(package)):
    for name in sorted(files):
      if not name.endswith(".py"):
        continue
      path = os.path.join(folder, name)
      with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
      for node in ast.walk(tree):
        if isinstance(node, ast.Import):
          modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
          modules = [node.module]
        else:
          continue
        for module in modules:
          found.setdefault(module.split(".")[0], os.path.relpath(path, ROOT))
  return {k: v for k, v in found.items()
          if k not in sys.stdlib_module_names and k not in ("mirrorgan_jax", "configs")}


def _pins() -> dict:
  pins = {}
  with open(os.path.join(ROOT, "requirements.txt"), encoding="utf-8") as f:
    for line in f:
      line = line.split("#")[0].strip()
      if line:
        r = Requirement(line)
        pins[_norm(r.name)] = r
  return pins


def test_every_third_party_import_is_declared():
  imports = _third_party_imports()
  assert {"jax", "flax", "PIL", "tensorboardX", "absl"} <= set(imports)  # the scan sees them
  installed = importlib.metadata.packages_distributions()
  declared = _declared()
  missing = []
  for name, where in sorted(imports.items()):
    dist = _norm(DISTRIBUTIONS.get(name, name))
    assert dist in {_norm(d) for d in installed.get(name, [])}, (name, installed.get(name))
    if dist not in declared:
      missing.append(f"{dist} (import {name}, {where})")
  assert not missing, f"not in pyproject.toml's dependencies: {', '.join(missing)}"


def test_declared_bounds_admit_the_tested_pins():
  declared, pins = _declared(), _pins()
  for dist, req in declared.items():
    assert not req.specifier or all(s.operator == ">=" for s in req.specifier), req  # bounds, not pins
    version = importlib.metadata.version(dist)
    assert req.specifier.contains(version, prereleases=True), (str(req), "installed", version)
    pin = [s.version for s in pins[dist].specifier if s.operator == "=="] if dist in pins else []
    assert all(req.specifier.contains(v, prereleases=True) for v in pin), (str(req), pin)
  # Every runtime package of requirements.txt is declared (or pulled by one that is).
  assert set(pins) - NOT_RUNTIME <= set(declared), set(pins) - NOT_RUNTIME - set(declared)


def test_console_scripts_name_functions_callable_without_arguments():
  scripts = _project().get("scripts", {})
  assert {"mirrorgan-train", "mirrorgan-generate", "mirrorgan-evaluate", "mirrorgan-export",
          "mirrorgan-convert", "mirrorgan-prepare"} <= set(scripts)
  for name, target in scripts.items():
    module, _, attr = target.partition(":")
    function = getattr(importlib.import_module(module), attr)
    assert callable(function), name
    inspect.signature(function).bind()  # a console script calls it with no arguments
  for module in ("mirrorgan_jax.train_main", "mirrorgan_jax.convert.__main__",
                 "mirrorgan_jax.data.prepare"):
    assert importlib.util.find_spec(module) is not None  # what the absl commands run


@pytest.mark.parametrize("command,flag", [("generate", "--workdir"), ("evaluate", "--metrics"),
                                          ("export", "--checkpoint")])
def test_argparse_commands_read_sys_argv(command, flag, monkeypatch, capsys):
  """As installed: `mirrorgan-<command> --help` calls main() with sys.argv."""
  target = _project()["scripts"][f"mirrorgan-{command}"]
  module, _, attr = target.partition(":")
  monkeypatch.setattr(sys, "argv", [f"mirrorgan-{command}", "--help"])
  with pytest.raises(SystemExit) as e:
    getattr(importlib.import_module(module), attr)()
  assert e.value.code == 0 and flag in capsys.readouterr().out


@pytest.mark.parametrize("command,flag,usage", [
    ("train", "--workdir", "python train.py"),
    ("convert", "--vocab", "python -m mirrorgan_jax.convert"),
    ("prepare", "--manual_dir", "python -m mirrorgan_jax.data.prepare")])
def test_absl_commands_run_their_module_as_python_m(command, flag, usage):
  """`mirrorgan-<command> --help` prints the module's docstring and its flags,
  as `python -m` does (a separate process: absl flags are global)."""
  target = _project()["scripts"][f"mirrorgan-{command}"]
  module, _, attr = target.partition(":")
  code = (f"import sys; sys.argv = ['mirrorgan-{command}', '--help']; "
          f"from {module} import {attr}; {attr}()")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
  assert flag in out.stdout, out.stdout + out.stderr
  assert usage in out.stdout  # the module's docstring
  assert "Traceback" not in out.stderr, out.stderr
