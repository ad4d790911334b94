import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from mirrorgan_jax.models.discriminator import Discriminator, JointConv, trunk_widths
from mirrorgan_jax.models.generator import Generator, ImageHead, num_upblocks
from mirrorgan_jax.models import layers, resnet
from mirrorgan_jax.models.layers import (Conv, ResBlock, UpBlock, conv2d, conv_weight_grad,
                                         glu, matmul_conv, upsample_conv3x3, upsample_nearest)


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


def _xla_conv3x3(h, kernel):
  return lax.conv_general_dilated(h, kernel, (1, 1), ((1, 1), (1, 1)),
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_image_head_with_subpixels_averages_the_tanh_of_each_subpixel():
  h = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 5, 4)), jnp.float32)
  official = ImageHead()
  kernel = official.init(jax.random.key(0), h)["params"]["conv"]["kernel"]
  assert kernel.shape == (3, 3, 4, 3)
  np.testing.assert_allclose(  # the official head: conv3x3 without bias, tanh
      official.apply({"params": {"conv": {"kernel": kernel}}}, h),
      np.tanh(_xla_conv3x3(h, kernel)), rtol=1e-5, atol=1e-6)
  head = ImageHead(subpixels=2)
  kernel = head.init(jax.random.key(0), h)["params"]["conv"]["kernel"]
  assert kernel.shape == (3, 3, 4, 12)  # 4 sub-pixels x RGB
  out = head.apply({"params": {"conv": {"kernel": kernel}}}, h)
  subpixels = [np.tanh(_xla_conv3x3(h, kernel[..., 3 * j:3 * j + 3])) for j in range(4)]
  np.testing.assert_allclose(out, np.mean(subpixels, axis=0), rtol=1e-5, atol=1e-6)
  assert out.shape == (2, 5, 5, 3)


def test_masked_image_head_lays_each_subpixels_colour_over_black_with_two_sigmoids_coverage():
  h = jnp.asarray(np.random.default_rng(1).normal(size=(2, 5, 5, 4)), jnp.float32)
  head = ImageHead(subpixels=2, masked=True)
  kernel = head.init(jax.random.key(0), h)["params"]["conv"]["kernel"]
  assert kernel.shape == (3, 3, 4, 20)  # 4 sub-pixels x (RGB, two coverage logits)
  out = head.apply({"params": {"conv": {"kernel": kernel}}}, h)
  sigmoid = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
  subpixels = []
  for j in range(4):
    y = np.asarray(_xla_conv3x3(h, kernel[..., 5 * j:5 * j + 5]), np.float64)
    coverage = sigmoid(y[..., 3:4]) * sigmoid(y[..., 4:5])
    subpixels.append(-1.0 + (np.tanh(y[..., :3]) + 1.0) * coverage)
  np.testing.assert_allclose(out, np.mean(subpixels, axis=0), rtol=1e-5, atol=1e-6)
  # No coverage: the background's black; full coverage: the colour itself.
  one = ImageHead(masked=True)
  k1 = np.zeros((3, 3, 4, 5), np.float32)
  k1[1, 1, 0, :3] = (0.5, -0.5, 0.0)  # colour tanh(0.5 h0), tanh(-0.5 h0), 0
  k1[1, 1, 1, 3] = 50.0  # first coverage sigmoid(50 h1)
  k1[1, 1, 2, 4] = 50.0
  x = np.zeros((1, 1, 2, 4), np.float32)
  x[0, 0, 0] = (1.0, 1.0, 1.0, 0.0)  # both sigmoids ~1
  x[0, 0, 1] = (1.0, 1.0, -1.0, 0.0)  # the second ~0
  y = np.asarray(one.apply({"params": {"conv": {"kernel": jnp.asarray(k1)}}}, jnp.asarray(x)))
  np.testing.assert_allclose(y[0, 0, 0], np.tanh([0.5, -0.5, 0.0]), atol=1e-6)
  np.testing.assert_allclose(y[0, 0, 1], [-1.0, -1.0, -1.0], atol=1e-6)


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


@pytest.mark.parametrize("size", [16, 64])
def test_discriminate_stacks_the_official_calls_and_keeps_their_results(size):
  """`discriminate` runs its small layers and heads once on the stacked batches
  (both kinds of trunk layer at 64 px: the large maps apart); its logits,
  gradients and new running statistics are those of the official separate
  calls (trunk on real, on fake; the conditional head three times, the
  unconditional twice), made here one by one through the same modules. Fails
  if a BatchNorm sees the stacked batches as one, or a part is out of order."""
  rng = np.random.default_rng(0)
  d = Discriminator(size, ndf=4)
  real, fake = (jnp.asarray(rng.normal(size=(3, size, size, 3)), jnp.float32) for _ in "rf")
  sent, wrong = (jnp.asarray(rng.normal(size=(3, 5)), jnp.float32) for _ in "sw")
  variables = d.init(jax.random.key(0), real, sent)
  # running statistics away from their init, so that the order of updates shows
  variables = {"params": variables["params"], "batch_stats": jax.tree.map(
      lambda v: v + jnp.asarray(rng.uniform(0.5, 1.5, v.shape), v.dtype),
      variables["batch_stats"])}

  def separate(m):
    real_f, fake_f = m.trunk(real, True), m.trunk(fake, True)
    return {"cond_real": m.cond(real_f, sent, True), "cond_fake": m.cond(fake_f, sent, True),
            "cond_wrong": m.cond(real_f, wrong, True), "real": m.uncond(real_f, train=True),
            "fake": m.uncond(fake_f, train=True)}

  def run(method, params):
    logits, new = d.apply({"params": params, "batch_stats": variables["batch_stats"]},
                          **({} if method is separate else dict(
                              real=real, fake=fake, sentence=sent, wrong_sentence=wrong)),
                          method=method, mutable=["batch_stats"])
    return sum(jnp.sum(jnp.sin(v)) for v in logits.values()), (logits, new)

  got, want = (jax.value_and_grad(lambda p, m=m: run(m, p), has_aux=True)(variables["params"])
               for m in ("discriminate", separate))
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):  # float rounding only
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  assert jax.tree.structure(got) == jax.tree.structure(want)


def test_discriminate_with_negatives_keeps_the_official_logits_and_scores_the_negatives():
  """A negative batch (negative data augmentation) leaves the official five
  logits as they were (each batch is normalised on its own) and gets the
  logits the generator's view would give it with the sentence."""
  rng = np.random.default_rng(0)
  d = Discriminator(32, ndf=4)
  real, fake, neg = (jnp.asarray(rng.normal(size=(3, 32, 32, 3)), jnp.float32) for _ in "rfn")
  sent, wrong = (jnp.asarray(rng.normal(size=(3, 5)), jnp.float32) for _ in "sw")
  variables = d.init(jax.random.key(0), real, sent)
  run = lambda *a, **k: d.apply(variables, *a, **k, mutable=["batch_stats"])[0]  # noqa: E731
  official = run(real, fake, sent, wrong, method="discriminate")
  got = run(real, fake, sent, wrong, neg, method="discriminate")
  assert set(got) == set(official) | {"negative", "cond_negative"}
  for k, v in official.items():
    np.testing.assert_allclose(got[k], v, rtol=1e-5, atol=1e-6)
  uncond, cond = run(neg, sent)
  np.testing.assert_allclose(got["negative"], uncond, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got["cond_negative"], cond, rtol=1e-5, atol=1e-6)
  assert np.abs(np.asarray(got["negative"]) - np.asarray(official["fake"])).max() > 1e-3


@pytest.mark.parametrize("shape", [(4, 4), (3, 5)])
def test_joint_conv_is_the_conv_of_the_features_with_the_sentence_tiled(shape):
  """The conditional head's conv, computed as an image part per distinct
  feature batch and a sentence part from the kernel's in-map taps, against
  XLA's 3x3 conv (padding 1) of the official input, the features with the
  sentence tiled over them: values and gradients (parameters, features,
  sentences), with one feature batch passed twice as `discriminate` does."""
  rng = np.random.default_rng(0)
  x1, x2 = (jnp.asarray(rng.normal(size=(2,) + shape + (6,)), jnp.float32) for _ in "ab")
  s1, s2, s3 = (jnp.asarray(rng.normal(size=(2, 5)), jnp.float32) for _ in "abc")
  jc = JointConv(7)
  params = jc.init(jax.random.key(0), (x1,), (s1,))["params"]
  assert params["kernel"].shape == (3, 3, 11, 7)

  def official(params, xs, ss):
    return tuple(_xla(1, 1)(jnp.concatenate([x, jnp.broadcast_to(
        s[:, None, None, :], x.shape[:3] + (5,))], -1), params["kernel"]) for x, s in zip(xs, ss))

  def loss(f, params, x1, x2, s1, s2, s3):
    outs = f(params, (x1, x2, x1), (s1, s2, s3))
    return sum(jnp.sum(jnp.sin(o) * (k + 1)) for k, o in enumerate(outs)), outs

  ours = lambda p, xs, ss: jc.apply({"params": p}, xs, ss)  # noqa: E731
  got, want = (jax.value_and_grad(lambda *a, f=f: loss(f, *a), argnums=range(6), has_aux=True)(
      params, x1, x2, s1, s2, s3) for f in (ours, official))
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _xla(stride, padding):
  return lambda x, w: lax.conv_general_dilated(
      x, w, (stride, stride), [(padding, padding)] * 2,
      dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("form", ["tapwise", "matmul"])
@pytest.mark.parametrize("kernel,stride,padding,size", [
    (3, 1, 1, 8), (4, 2, 1, 8), (1, 1, 0, 8), (4, 4, 0, 8), (3, 2, 1, 9), (1, 2, 0, 7),
    (7, 2, 3, 11), (4, 4, 0, 4), (4, 2, 0, 9), (2, 2, 1, 5), (6, 3, 1, 10)])
def test_cpu_conv_forms_and_their_gradients_equal_xla(form, kernel, stride, padding, size):
  """Both CPU forms of `conv2d` against XLA's own convolution and its
  gradients: the tap-wise kernel gradient, and the matmul over patches (odd
  sizes: strides that do not divide the padded input; a kernel covering the
  input; strides dividing the kernel, run on pixel blocks)."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, size, size + 1, 3)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(kernel, kernel, 3, 5)), jnp.float32)
  xla = _xla(stride, padding)
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))  # noqa: E731
  ours = {"tapwise": layers._conv_tapwise_grad, "matmul": matmul_conv}[form]
  ours = jax.jit(ours, static_argnums=(2, 3))
  np.testing.assert_allclose(ours(x, w, stride, padding), xla(x, w), rtol=1e-5, atol=1e-5)
  got = jax.grad(loss(lambda x, w: ours(x, w, stride, padding)), argnums=(0, 1))(x, w)
  want = jax.grad(loss(xla), argnums=(0, 1))(x, w)
  for a, b in zip(got, want):  # sums of up to 147 products of O(1) terms
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  if form == "tapwise":
    np.testing.assert_allclose(
        conv_weight_grad(x, jnp.ones((2,) + xla(x, w).shape[1:3] + (5,)), w.shape, stride,
                         padding),
        jax.grad(lambda w: jnp.sum(xla(x, w)))(w), rtol=1e-5, atol=1e-5)


def test_conv_weight_grad_runs_with_64_bit_types_enabled():
  """Under `jax_enable_x64` the tap-wise kernel gradient (every conv's on CPU)
  indexed with mixed int64 and int32 offsets and raised a TypeError; in
  float64 it now equals XLA's own gradient to float64 rounding."""
  rng = np.random.default_rng(0)
  with jax.enable_x64(True):
    x = jnp.asarray(rng.normal(size=(2, 9, 8, 3)), jnp.float64)
    w = jnp.asarray(rng.normal(size=(3, 3, 3, 4)), jnp.float64)
    xla = _xla(2, 1)
    g = jnp.asarray(rng.normal(size=xla(x, w).shape), jnp.float64)
    got = conv_weight_grad(x, g, w.shape, 2, 1)
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(got, jax.vjp(lambda w: xla(x, w), w)[1](g)[0], rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("x_shape,kernel,stride,padding,cout,form", [
    ((2, 8, 8, 3), 3, 1, 1, 5, "matmul"),      # 64 output pixels
    ((2, 14, 14, 3), 3, 1, 1, 5, "matmul"),    # 196 (ResNet's layer3)
    ((2, 28, 28, 3), 3, 2, 1, 5, "matmul"),    # 196 at stride 2
    ((2, 15, 14, 3), 3, 1, 1, 5, "tapwise"),   # 210
    ((2, 16, 16, 3), 4, 2, 1, 5, "matmul"),    # 8x8
    ((2, 32, 32, 3), 1, 1, 0, 5, "matmul"),    # a 1x1 kernel at any size
    ((2, 32, 32, 3), 3, 1, 1, 5, "tapwise"),
    ((2, 32, 32, 8), 4, 2, 1, 5, "matmul"),    # an image at a stride dividing the kernel
    ((2, 32, 32, 9), 4, 2, 1, 5, "tapwise"),   # 9 channels: not an image
    ((2, 32, 32, 3), 3, 2, 1, 5, "tapwise"),   # the stride does not divide the kernel
    ((2, 32, 32, 3), 6, 3, 1, 5, "matmul"),
    ((2, 32, 32, 16), 3, 1, 1, 4, "xla"),      # to an image's channels
    ((2, 32, 32, 16), 3, 1, 1, 3, "xla")])
def test_conv2d_picks_its_cpu_form_by_shape(x_shape, kernel, stride, padding, cout, form):
  """Which form `conv2d` runs on CPU: the matmul over patches, XLA's conv with
  the tap-wise kernel gradient (a custom VJP), or XLA's conv as is."""
  w = jnp.zeros((kernel, kernel, x_shape[-1], cout))
  jaxpr = str(jax.make_jaxpr(lambda x, w: conv2d(x, w, stride, padding))(jnp.zeros(x_shape), w))
  assert ("conv_general_dilated" in jaxpr) == (form != "matmul"), jaxpr
  assert ("dot_general" in jaxpr) == (form == "matmul"), jaxpr
  assert ("custom_vjp" in jaxpr) == (form == "tapwise"), jaxpr
  x = jnp.linspace(-1, 1, np.prod(x_shape)).reshape(x_shape)
  ours, xla = [jax.grad(lambda x, w: jnp.sum(jnp.sin(f(x, w))), argnums=(0, 1))(x, w + 0.1)
               for f in (lambda x, w: conv2d(x, w, stride, padding), _xla(stride, padding))]
  for got, want in zip(ours, xla):  # input and kernel gradients are XLA's, to float rounding
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)  # sums of up to 2,048 O(1) terms


@pytest.mark.optimized  # what is checked is XLA's fusion
def test_resnet_blocks_are_not_recomputed_inside_later_fusions():
  """ResNet's residual stream is kept at each block's output: without the
  barrier, XLA:CPU fused the stream's elementwise chain into later consumers,
  so that one fusion recomputed every earlier block's BatchNorm (35 of them in
  ResNet-152's layer3; 4 of the 4 here). Forward and backward, as STREAM runs."""
  import re  # pylint: disable=import-outside-toplevel
  depths = dict(resnet.DEPTHS)
  resnet.DEPTHS[11] = (1, 1, 4, 1)
  try:
    model = resnet.ResNet(depth=11)
    x = jnp.zeros((2, 32, 32, 3))
    variables = model.init(jax.random.key(1), x)

    def forward_backward(x):
      y, vjp = jax.vjp(lambda x: model.apply(variables, x), x)
      return vjp(jnp.ones_like(y))[0]

    text = jax.jit(forward_backward).lower(x).compile().as_text()
  finally:
    resnet.DEPTHS.clear()
    resnet.DEPTHS.update(depths)
  fused = [c for c in re.split(r"\n(?=%?[\w.\-]+ \()", text) if c.lstrip("%").startswith("fused")]
  assert fused
  assert max(len(set(re.findall(r"(layer\d_\d+)/bn3/", c))) for c in fused) == 1


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_relu_keeping_mask_has_relus_values_and_derivatives(dtype):
  x = jnp.asarray([-2.0, -0.0, 0.0, 1e-3, 3.0], dtype)
  t = jnp.asarray([1.0, 2.0, 3.0, 4.0, 5.0], dtype)
  assert jnp.array_equal(layers.relu_keeping_mask(x), jax.nn.relu(x))
  got, want = (jax.jvp(f, (x,), (t,)) for f in (layers.relu_keeping_mask, jax.nn.relu))
  assert jnp.array_equal(got[1], want[1]) and jnp.array_equal(got[1], t * (x > 0))
  f = lambda r: lambda x: jnp.sum(r(x) * t)  # noqa: E731
  assert jnp.array_equal(jax.grad(f(layers.relu_keeping_mask))(x), jax.grad(f(jax.nn.relu))(x))
  assert jnp.array_equal(jax.grad(f(layers.relu_keeping_mask))(x), t * (x > 0))


def _resnet_input_gradient(relu, monkeypatch):
  """A 7-block ResNet's forward and backward to its input, compiled (its
  temporaries in bytes) and run, with `relu` as its ReLU."""
  monkeypatch.setitem(resnet.DEPTHS, 11, (2, 2, 2, 1))
  monkeypatch.setattr(resnet, "relu", relu)
  model = resnet.ResNet(depth=11)
  x = jax.random.normal(jax.random.key(0), (2, 64, 64, 3))
  variables = model.init(jax.random.key(1), x)
  grad = jax.jit(jax.grad(lambda x: jnp.sum(model.apply(variables, x) ** 2)))
  compiled = grad.lower(x).compile()
  return compiled.memory_analysis().temp_size_in_bytes, compiled(x)


def test_resnet_keeps_relu_masks_not_inputs_for_its_input_gradient(monkeypatch):
  """With jax.nn.relu, XLA keeps each ReLU's float input for the backward
  pass; with relu_keeping_mask a 1-byte mask: the same input gradient from
  fewer temporaries (here 6.9 -> 4.9 MB; ResNet-152, batch 8 at 224 px: 1,106
  -> 243 MiB)."""
  lean, got = _resnet_input_gradient(layers.relu_keeping_mask, monkeypatch)
  full, want = _resnet_input_gradient(jax.nn.relu, monkeypatch)
  np.testing.assert_array_equal(got, want)
  assert lean < 0.8 * full, (lean, full)


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
