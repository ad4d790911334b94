"""The Inception-v3 that FID and IS look through, with its weights.

Weights live in a `.npz` of our own (keys like `params/Mixed_5b/branch1x1/conv/kernel`,
`batch_stats/.../mean`, and `__variant__`: `pytorch-fid` or `torchvision`),
made from PyTorch files by `python -m mirrorgan_jax.convert fid_inception`. With no
file, the network gets random weights (He-normal convolutions, identity
BatchNorm) so that the whole evaluation still runs and can be tested; every
figure computed that way is labelled `UNCALIBRATED (random Inception weights)`.

Images go in as pytorch-fid feeds them: RGB in [-1, 1], resized bilinearly
(no antialiasing) to 299 x 299.
"""

import dataclasses
import functools
import hashlib
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np

from mirrorgan_jax import parallel
from mirrorgan_jax.models.image_encoder import resize_bilinear
from mirrorgan_jax.models.inception import InceptionV3

UNCALIBRATED = "UNCALIBRATED (random Inception weights)"
VARIANTS = ("pytorch-fid", "torchvision")
PYTORCH_FID_CLASSES = 1008


class InceptionWeightsError(ValueError):
  """A weights file that does not fit the network."""


def model_for(variant: str, num_classes: int) -> InceptionV3:
  if variant not in VARIANTS:
    raise InceptionWeightsError(f"Inception variant {variant!r}: use one of {VARIANTS}")
  return InceptionV3(num_classes=num_classes, fid=variant == "pytorch-fid")


def expected_shapes(model: InceptionV3, image_size: int = 299) -> dict:
  """{flat key: shape} of the network's variables (no computation)."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, image_size, image_size, 3)))
  return {k: v.shape for k, v in flatten(shapes).items()}


def flatten(variables) -> dict:
  return {"/".join(path): v for path, v in
          flax.traverse_util.flatten_dict(flax.core.unfreeze(variables)).items()}


def unflatten(flat: dict) -> dict:
  return flax.traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


def save_weights(path: str, variables, variant: str) -> None:
  if variant not in VARIANTS:
    raise InceptionWeightsError(f"Inception variant {variant!r}: use one of {VARIANTS}")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  arrays = {k: np.asarray(v, np.float32) for k, v in flatten(variables).items()}
  np.savez(path, __variant__=np.array(variant), **arrays)


def random_weights(model: InceptionV3, seed: int = 0) -> dict:
  """Deterministic random variables, fast (numpy; no XLA compile of init)."""
  rng = np.random.default_rng(seed)
  out = {}
  for key, shape in sorted(expected_shapes(model).items()):
    name = key.rsplit("/", 1)[-1]
    if name == "kernel":
      fan_in = int(np.prod(shape[:-1]))
      out[key] = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape).astype(np.float32)
    elif name in ("scale", "var"):
      out[key] = np.ones(shape, np.float32)
    else:  # bias, mean
      out[key] = np.zeros(shape, np.float32)
  return unflatten(out)


@functools.lru_cache(maxsize=None)
def _programs(model: InceptionV3, size: int):
  """(forward, its jitted form), once per network and input size in this
  process: every InceptionNet of them shares the compiled program."""

  def forward(variables, images):
    x = images.astype(jnp.float32) / 127.5 - 1.0 if images.dtype == jnp.uint8 else images
    out = model.apply(variables, resize_bilinear(x, size))
    return out["pool"], out.get("logits", jnp.zeros((len(x), 0)))

  return forward, jax.jit(forward)


@dataclasses.dataclass
class InceptionNet:
  """Pool features and class logits of images, jit-compiled and sharded."""
  model: InceptionV3
  variables: dict
  label: str  # where the weights came from, or UNCALIBRATED
  calibrated: bool
  image_size: int = 299
  mesh: object = None

  def __post_init__(self):
    self.mesh = self.mesh or parallel.make_mesh(jax.local_devices())
    self.variables = jax.device_put(self.variables, parallel.replicated(self.mesh))
    # forward: pure, for programs that make the images too.
    self.forward, self._forward = _programs(self.model, self.image_size)

  def __call__(self, images, batch_size: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, H, W, 3) (or float in [-1, 1]) -> (pool (N, 2048), logits (N, C))."""
    images = np.asarray(images)
    n = self.mesh.size
    b = -(-batch_size // n) * n
    pools, logits = [], []
    sharding = parallel.data_sharded(self.mesh)
    for i in range(0, len(images), b):
      chunk = images[i:i + b]
      pad = b - len(chunk)
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)]) if pad else chunk
      p, lg = self._forward(self.variables, jax.device_put(chunk, sharding))
      pools.append(np.asarray(p, np.float64)[:b - pad])
      logits.append(np.asarray(lg, np.float64)[:b - pad])
    return np.concatenate(pools), np.concatenate(logits)


def file_digest(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()[:12]


def load(path: str | None, *, image_size: int = 299, mesh=None) -> InceptionNet:
  """The network with the weights in `path` (our .npz), or random weights
  (labelled UNCALIBRATED) when `path` is empty."""
  if not path:
    model = model_for("pytorch-fid", PYTORCH_FID_CLASSES)
    return InceptionNet(model, random_weights(model), UNCALIBRATED, False, image_size, mesh)
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.exists(path):
    raise FileNotFoundError(f"Inception weights {path}: no such file (convert pytorch-fid's "
                            f"weights with python -m mirrorgan_jax.convert fid_inception)")
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except (OSError, ValueError) as e:
    raise InceptionWeightsError(f"{path}: not a readable .npz of Inception weights ({e})") from e
  variant = str(arrays.pop("__variant__", "pytorch-fid"))
  fc = arrays.get("params/fc/kernel")
  model = model_for(variant, 0 if fc is None else fc.shape[-1])
  expected = expected_shapes(model)
  missing = sorted(set(expected) - set(arrays))
  extra = sorted(set(arrays) - set(expected))
  wrong = sorted(k for k in set(expected) & set(arrays) if arrays[k].shape != expected[k])
  if missing or extra or wrong:
    raise InceptionWeightsError(
        f"{path}: does not fit Inception-v3 ({variant}): missing {missing[:5]}"
        f"{'...' if len(missing) > 5 else ''}, unexpected {extra[:5]}, wrong shapes "
        f"{[(k, arrays[k].shape, expected[k]) for k in wrong[:5]]}")
  label = f"Inception-v3 {variant} ({os.path.basename(path)}, sha256 {file_digest(path)})"
  return InceptionNet(model, unflatten(arrays), label, True, image_size, mesh)
