"""Output shapes of every module and parameter counts, at the birds config.

Everything is traced with `jax.eval_shape`: no FLOP is spent, so the full-size
networks cost nothing to check.
"""

import jax
import numpy as np
import jax.numpy as jnp
import pytest

from configs import birds, coco, tiny
from mirrorgan_jax import factory
from mirrorgan_jax.gan_state import example_inputs
from mirrorgan_jax.models.inception import InceptionV3
from mirrorgan_jax.models.resnet import ResNet
from tests.helpers import count_params

B = 2
CONFIG = birds.get_config()
MODELS = factory.create_models(CONFIG)
X = example_inputs(CONFIG, B)
T = CONFIG.text.words_num
KEYS = {"params": jax.random.key(0), "noise": jax.random.key(1)}


def shapes(tree):
  return jax.tree.map(lambda a: tuple(a.shape), tree)


def init_and_apply(module, *args, method=None, **kwargs):
  variables = jax.eval_shape(lambda: module.init(KEYS, *args, method=method, **kwargs))
  out = jax.eval_shape(lambda v: module.apply(v, *args, rngs=KEYS, method=method,
                                              mutable=False, **kwargs), variables)
  return variables, out


def test_generator_shapes_and_parameter_count():
  variables, (images, attention, mu, logvar) = init_and_apply(
      MODELS.generator, X["z"], X["sentence"], X["words"], X["mask"], train=False)
  assert count_params(variables["params"]) == 7_105_392
  assert shapes(images) == ((B, 64, 64, 3), (B, 128, 128, 3), (B, 256, 256, 3))
  assert shapes(attention) == ((B, T, 64, 64), (B, T, 128, 128))
  assert shapes((mu, logvar)) == ((B, 100), (B, 100))
  assert all(i.dtype == jnp.float32 for i in images)


@pytest.mark.parametrize("stage,size,count", [
    (0, 64, 6_313_730), (1, 128, 19_424_002), (2, 256, 71_858_946)])
def test_discriminator_shapes_and_parameter_counts(stage, size, count):
  disc = MODELS.discriminators[stage]
  img = jnp.zeros((B, size, size, 3))
  variables, (uncond, cond) = init_and_apply(disc, img, X["sentence"], train=False)
  assert count_params(variables["params"]) == count
  assert shapes((uncond, cond)) == ((B,), (B,))
  logits = jax.eval_shape(lambda v: disc.apply(
      v, img, img, X["sentence"], X["sentence"], method="discriminate",
      mutable=["batch_stats"])[0], variables)
  assert set(logits) == {"real", "fake", "cond_real", "cond_fake", "cond_wrong"}
  assert all(v.shape == (B,) for v in logits.values())


def test_coco_widths_give_attngan_coco_generator():
  models = factory.create_models(coco.get_config())
  x = example_inputs(coco.get_config(), B)
  variables, (images, _, _, _) = init_and_apply(
      models.generator, x["z"], x["sentence"], x["words"], x["mask"], train=False)
  assert shapes(images) == ((B, 64, 64, 3), (B, 128, 128, 3), (B, 256, 256, 3))
  # ngf 48 and three residual blocks per refinement stage.
  assert variables["params"]["h_net1"]["fc"]["kernel"].shape == (200, 48 * 16 * 4 * 4 * 2)
  assert set(variables["params"]["h_net2"]) >= {"residual0", "residual1", "residual2"}


def test_text_encoder_shapes():
  _, (words, sentence) = init_and_apply(MODELS.text_encoder, X["captions"], X["lengths"])
  assert shapes((words, sentence)) == ((B, T, 256), (B, 256))


def test_image_encoder_shapes():
  variables, (regions, code) = init_and_apply(MODELS.image_encoder, X["images"][-1])
  assert shapes((regions, code)) == ((B, 17, 17, 256), (B, 256))
  assert set(variables["params"]) == {"inception", "emb_features", "emb_cnn_code"}


def test_small_backbones_at_the_tiny_config():
  c = tiny.get_config()
  models, x = factory.create_models(c), example_inputs(c, B)
  _, (regions, code) = init_and_apply(models.image_encoder, x["images"][-1])
  assert shapes((regions, code)) == ((B, 16, 16, 16), (B, 16))
  _, logits = init_and_apply(models.captioner, x["images"][-1], x["captions"])
  assert logits.shape == (B, c.text.words_num, c.text.vocab_size)


def test_inception_matches_torchvision_parameter_count():
  # torchvision inception_v3: 27,161,264 parameters, of which 3,326,696 are the
  # auxiliary classifier (not built here: it only serves ImageNet training).
  module = InceptionV3(num_classes=1000)
  variables, out = init_and_apply(module, jnp.zeros((B, 299, 299, 3)))
  assert count_params(variables["params"]) == 27_161_264 - 3_326_696
  assert shapes(out) == {"Mixed_6e": (B, 17, 17, 768), "Mixed_7c": (B, 8, 8, 2048),
                         "pool": (B, 2048), "logits": (B, 1000)}


def test_resnet152_matches_torchvision_parameter_count():
  # torchvision resnet152: 60,192,808 parameters, 2,049,000 of them the fc layer.
  variables, pooled = init_and_apply(ResNet(152), jnp.zeros((B, 224, 224, 3)))
  assert count_params(variables["params"]) == 60_192_808 - 2_049_000
  assert pooled.shape == (B, 2048)


def test_captioner_shapes():
  cap = MODELS.captioner
  variables, logits = init_and_apply(cap, X["images"][-1], X["captions"])
  assert logits.shape == (B, T, 5450)
  ids = jax.eval_shape(lambda v: cap.apply(v, X["images"][-1], 20,
                                           method="greedy_decode"), variables)
  assert ids.shape == (B, 20)
  decoder = variables["params"]["decoder"]
  assert decoder["embed"]["embedding"].shape == (5450, 256)
  assert decoder["lstm"]["hi"]["kernel"].shape == (512, 512)
  assert decoder["linear"]["kernel"].shape == (512, 5450)


def test_small_cnn_keeps_the_layout_at_any_input_size():
  from mirrorgan_jax.models.small_cnn import SmallCNN, with_coordinates
  x = jnp.zeros((1, 32, 32, 3))
  grid = with_coordinates(x)
  assert grid.shape == (1, 32, 32, 5)
  np.testing.assert_allclose(grid[0, 0, :, 3], np.linspace(-1, 1, 32), rtol=1e-6)  # x
  np.testing.assert_allclose(grid[0, :, 0, 4], np.linspace(-1, 1, 32), rtol=1e-6)  # y
  m = SmallCNN((8, 16))
  v = m.init(jax.random.key(0), x)
  # 32 px: an 8x8 map, resized to the 4x4 grid; 16 px (a smaller stage): 4x4 as is.
  assert m.apply(v, x)["global"].shape == (1, 4 * 4 * 16)
  assert m.apply(v, jnp.zeros((1, 16, 16, 3)))["global"].shape == (1, 4 * 4 * 16)
  # The same object on the left and on the right gives different global features.
  left = x.at[:, 12:20, 2:10].set(1.0)
  right = x.at[:, 12:20, 22:30].set(1.0)
  a, b = m.apply(v, left)["global"], m.apply(v, right)["global"]
  assert float(jnp.abs(a - b).max()) > 1e-3
