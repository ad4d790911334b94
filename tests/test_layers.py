import jax
import jax.numpy as jnp
import numpy as np

from mirrorgan_jax.models.discriminator import Discriminator, trunk_widths
from mirrorgan_jax.models.generator import Generator, num_upblocks
from mirrorgan_jax.models.layers import ResBlock, glu, upsample_nearest


def test_glu_gates_the_first_half_with_the_second():
  x = jnp.array([[1.0, -2.0, 0.0, 3.0]])
  np.testing.assert_allclose(glu(x), [[1.0 * 0.5, -2.0 / (1 + np.exp(-3.0))]], rtol=1e-6)


def test_nearest_upsampling_repeats_pixels():
  x = jnp.arange(4.0).reshape(1, 2, 2, 1)
  np.testing.assert_array_equal(upsample_nearest(x)[0, :, :, 0],
                                [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])


def test_official_initialisation():
  g = Generator(ngf=8, num_stages=2, base_size=16, condition_dim=8)
  z, s, w, m = jnp.zeros((2, 8)), jnp.zeros((2, 16)), jnp.zeros((2, 3, 16)), jnp.zeros((2, 3), bool)
  p = g.init({"params": jax.random.key(0), "noise": jax.random.key(1)}, z, s, w, m)["params"]
  k = np.asarray(p["h_net2"]["conv"]["kernel"]).reshape(-1, 16)  # 1x1 conv, 24 -> 16
  np.testing.assert_allclose(k.T @ k, np.eye(16), atol=1e-5)  # orthogonal, gain 1
  fc = np.asarray(p["h_net1"]["fc"]["kernel"])  # (16, 512): orthonormal rows
  np.testing.assert_allclose(fc @ fc.T, np.eye(16), atol=1e-5)
  assert np.all(np.asarray(p["ca_net"]["fc"]["bias"]) == 0)
  assert np.all(np.asarray(p["h_net2"]["att"]["linear"]["bias"]) == 0)
  scales = np.concatenate([np.asarray(x).ravel() for path, x in
                           jax.tree_util.tree_leaves_with_path(p)
                           if path[-1].key == "scale"])
  assert abs(scales.mean() - 1.0) < 0.01 and 0.01 < scales.std() < 0.03
  biases = [x for path, x in jax.tree_util.tree_leaves_with_path(p)
            if path[-1].key == "bias" and "bn" in str(path)]
  assert biases and all(np.all(np.asarray(b) == 0) for b in biases)


def test_resblock_adds_its_input():
  block = ResBlock()
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 4, 6)), jnp.float32)
  v = block.init(jax.random.key(0), x, train=False)
  zeroed = jax.tree.map(jnp.zeros_like, v["params"])  # all branches output 0
  out = block.apply({"params": zeroed, "batch_stats": v["batch_stats"]}, x, train=False)
  np.testing.assert_allclose(out, x, rtol=1e-6)


def test_widths_scale_with_the_image_size():
  assert num_upblocks(64) == 4 and num_upblocks(16) == 2
  assert trunk_widths(64, 64) == ([64, 128, 256, 512], [], [])
  assert trunk_widths(128, 64) == ([64, 128, 256, 512], [1024], [512])
  assert trunk_widths(256, 64) == ([64, 128, 256, 512], [1024, 2048], [1024, 512])
  assert trunk_widths(16, 8) == ([8, 16], [], [])
  for size in (8, 16, 32):
    d = Discriminator(size, ndf=4)
    x, s = jnp.zeros((2, size, size, 3)), jnp.zeros((2, 5))
    (u, c), _ = d.init_with_output(jax.random.key(0), x, s, train=False)
    assert u.shape == c.shape == (2,)
