import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from mirrorgan_jax.models.discriminator import Discriminator, trunk_widths
from mirrorgan_jax.models.generator import Generator, num_upblocks
from mirrorgan_jax.models.layers import (Conv, ResBlock, UpBlock, conv2d, conv_weight_grad,
                                         glu, upsample_conv3x3, upsample_nearest)


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
  bn_shifts = [x for path, x in jax.tree_util.tree_leaves_with_path(p)
               if path[-1].key == "bias" and ("BatchNorm" in str(path) or "_bn" in str(path))]
  assert len(bn_shifts) >= 6  # fc_bn, the up-blocks' and the residual blocks' BNs
  assert all(np.all(np.asarray(b) == 0) for b in bn_shifts)


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


@pytest.mark.parametrize("kernel,stride,padding", [(3, 1, 1), (4, 2, 1), (1, 1, 0), (4, 4, 0)])
def test_tapwise_conv_gradients_equal_xla(kernel, stride, padding):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 8, 8, 3)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(kernel, kernel, 3, 5)), jnp.float32)
  xla = lambda x, w: lax.conv_general_dilated(  # noqa: E731
      x, w, (stride, stride), [(padding, padding)] * 2,
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))  # noqa: E731
  ours = lambda x, w: conv2d(x, w, stride, padding)  # noqa: E731
  np.testing.assert_allclose(ours(x, w), xla(x, w), rtol=1e-6)
  got = jax.grad(loss(ours), argnums=(0, 1))(x, w)
  want = jax.grad(loss(xla), argnums=(0, 1))(x, w)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(
      conv_weight_grad(x, jnp.ones((2,) + xla(x, w).shape[1:3] + (5,)), w.shape, stride, padding),
      jax.grad(lambda w: jnp.sum(xla(x, w)))(w), rtol=1e-5, atol=1e-5)


def test_fused_upsampling_conv_equals_conv_of_the_upsampled_map():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(2, 5, 7, 3)), jnp.float32)  # odd, non-square on purpose
  w = jnp.asarray(rng.normal(size=(3, 3, 3, 4)), jnp.float32)
  direct = lambda x, w: lax.conv_general_dilated(  # noqa: E731
      upsample_nearest(x), w, (1, 1), [(1, 1)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(upsample_conv3x3(x, w), direct(x, w), rtol=1e-5, atol=1e-5)
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))  # noqa: E731
  got = jax.grad(loss(upsample_conv3x3), argnums=(0, 1))(x, w)
  want = jax.grad(loss(direct), argnums=(0, 1))(x, w)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_upblock_keeps_its_parameters_and_result():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 4, 4, 6)), jnp.float32)
  block = UpBlock(5)
  variables = block.init(jax.random.key(0), x, False)
  assert variables["params"]["Conv_0"]["kernel"].shape == (3, 3, 6, 10)  # as before fusing
  w = variables["params"]["Conv_0"]["kernel"]
  bn = variables["params"]["BatchNorm_0"]
  want = conv2d(upsample_nearest(x), w, 1, 1)
  want = want * bn["scale"] / np.sqrt(1 + 1e-5) + bn["bias"]  # running stats 0 / 1
  np.testing.assert_allclose(block.apply(variables, x, False), glu(want), rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="3x3"):
    Conv(4, 4, 2, 1, upsample=True).init(jax.random.key(0), x)
