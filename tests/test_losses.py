"""Each loss against a hand computation in numpy on small tensors."""

import numpy as np
import pytest

from mirrorgan_jax import losses


def np_bce(logits, label):
  p = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
  return float(np.mean(-(label * np.log(p) + (1 - label) * np.log(1 - p))))


LOGITS = {
    "real": np.array([2.0, -1.0, 0.5]),
    "cond_real": np.array([1.5, 0.0, -0.3]),
    "fake": np.array([-2.0, 0.7, 0.1]),
    "cond_fake": np.array([0.2, -0.4, 3.0]),
    "cond_wrong": np.array([-1.2, 1.1, 0.0]),
}


def test_bce_from_logits():
  assert float(losses.bce(np.array([0.0, 0.0]), 1.0)) == pytest.approx(np.log(2.0))
  assert float(losses.bce(LOGITS["real"], 1.0)) == pytest.approx(np_bce(LOGITS["real"], 1))
  assert float(losses.bce(LOGITS["fake"], 0.0)) == pytest.approx(np_bce(LOGITS["fake"], 0))


def test_discriminator_loss_weights_real_by_half_and_fake_by_a_third():
  loss, terms = losses.discriminator_loss(LOGITS)
  expected = ((np_bce(LOGITS["real"], 1) + np_bce(LOGITS["cond_real"], 1)) / 2
              + (np_bce(LOGITS["fake"], 0) + np_bce(LOGITS["cond_fake"], 0)
                 + np_bce(LOGITS["cond_wrong"], 0)) / 3)
  assert float(loss) == pytest.approx(expected, rel=1e-6)
  assert float(terms["cond_wrong"]) == pytest.approx(np_bce(LOGITS["cond_wrong"], 0))


def test_discriminator_loss_adds_the_weighted_negatives_against_the_fake_label():
  logits = dict(LOGITS, negative=np.array([0.4, -0.9, 1.3]),
                cond_negative=np.array([-0.2, 2.2, 0.6]))
  official, _ = losses.discriminator_loss(LOGITS)
  loss, terms = losses.discriminator_loss(logits, negative_weight=0.5)
  negative = (np_bce(logits["negative"], 0) + np_bce(logits["cond_negative"], 0)) / 2
  assert float(terms["negative"]) == pytest.approx(negative, rel=1e-6)
  assert float(loss) == pytest.approx(float(official) + 0.5 * negative, rel=1e-6)
  assert "negative" not in losses.discriminator_loss(LOGITS, negative_weight=0.5)[1]


def test_generator_adversarial_loss_is_the_unweighted_sum():
  u, c = np.array([0.3, -2.0]), np.array([1.0, 0.1])
  assert float(losses.generator_adversarial_loss(u, c)) == pytest.approx(
      np_bce(u, 1) + np_bce(c, 1), rel=1e-6)


def test_kl_is_a_mean_over_batch_and_dimensions():
  mu = np.array([[0.5, -1.0, 0.0], [2.0, 0.1, -0.3]])
  logvar = np.array([[0.0, 0.2, -1.0], [0.5, -0.5, 0.0]])
  expected = -0.5 * np.mean(1 + logvar - mu**2 - np.exp(logvar))
  assert float(losses.kl_loss(mu, logvar)) == pytest.approx(expected, rel=1e-6)
  assert float(losses.kl_loss(np.zeros((2, 3)), np.zeros((2, 3)))) == 0.0


def test_caption_loss_averages_over_valid_tokens_only():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 4, 5))
  captions = np.array([[3, 1, 0, 0], [2, 4, 4, 1]])
  lengths = np.array([2, 4])
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  picked = [logp[b, t, captions[b, t]] for b in range(2) for t in range(lengths[b])]
  expected = -np.mean(picked)  # 6 valid tokens, not 8
  assert float(losses.caption_loss(logits, captions, lengths)) == pytest.approx(expected, rel=1e-6)
  # Logits at padded positions are ignored entirely.
  logits2 = logits.copy()
  logits2[0, 2:] = 100.0
  assert float(losses.caption_loss(logits2, captions, lengths)) == pytest.approx(expected, rel=1e-6)
