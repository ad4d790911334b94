import jax
import jax.numpy as jnp
import numpy as np

from mirrorgan_jax.models.captioner import Captioner, imagenet_normalize
from mirrorgan_jax.batch import random_captions

B, T, V = 3, 6, 17
CAP = Captioner(V, embed_size=8, hidden_size=12, backbone="small", small_widths=(4, 8))
IMAGES = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (B, 16, 16, 3)), jnp.float32)
CAPTIONS, LENGTHS = random_captions(np.random.default_rng(1), B, T, V, min_len=2)
VARS = CAP.init(jax.random.key(0), IMAGES, CAPTIONS)


def logits_for(captions):
  return np.asarray(CAP.apply(VARS, IMAGES, jnp.asarray(captions)))


def test_step_t_sees_the_image_and_words_before_t_only():
  base = logits_for(CAPTIONS)
  assert base.shape == (B, T, V)
  for t in range(T):
    changed = CAPTIONS.copy()
    changed[:, t] = (changed[:, t] % (V - 1)) + 1
    out = logits_for(changed)
    # Word t is the target at step t and the input at step t+1.
    np.testing.assert_array_equal(out[:, :t + 1], base[:, :t + 1])
    if t + 1 < T:
      assert not np.allclose(out[:, t + 1], base[:, t + 1])


def test_step_zero_depends_on_the_image():
  other = CAP.apply(VARS, -IMAGES, jnp.asarray(CAPTIONS))
  assert not np.allclose(other[:, 0], logits_for(CAPTIONS)[:, 0])


def test_greedy_decoding_agrees_with_teacher_forcing_on_its_own_output():
  ids = np.asarray(CAP.apply(VARS, IMAGES, 8, method="greedy_decode"))
  assert ids.shape == (B, 8)
  forced = np.asarray(CAP.apply(VARS, IMAGES, jnp.asarray(ids)))
  np.testing.assert_array_equal(forced.argmax(-1), ids)


def test_imagenet_normalisation():
  np.testing.assert_allclose(imagenet_normalize(jnp.full((1, 1, 1, 3), 1.0))[0, 0, 0],
                             (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]),
                             rtol=1e-6)
