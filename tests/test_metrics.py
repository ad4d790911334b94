"""FID, IS and R-precision against hand computations; the Inception network's
weights files and its uncalibrated fallback."""

import numpy as np
import pytest

from mirrorgan_jax.metrics import fid, inception_net, inception_score, r_precision


def _fid_by_eigenvalues(mu1, s1, mu2, s2):
  """tr(sqrtm(S1 S2)) = sum of the square roots of the eigenvalues of S1 S2
  (real and >= 0 for covariance matrices): an independent route to FID."""
  eig = np.linalg.eigvals(s1 @ s2)
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
               - 2 * np.sum(np.sqrt(np.clip(eig.real, 0, None))))


def test_fid_equals_the_eigenvalue_computation_on_random_features():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(400, 16))
  b = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16)) * 0.5 + 0.3
  mu1, s1 = fid.statistics(a)
  mu2, s2 = fid.statistics(b)
  np.testing.assert_allclose(mu1, a.mean(0))
  np.testing.assert_allclose(s1, np.cov(a.T))
  expected = _fid_by_eigenvalues(mu1, s1, mu2, s2)
  assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)
  assert expected > 1.0


def test_fid_of_a_set_against_itself_is_zero_and_diagonal_case_is_closed_form():
  rng = np.random.default_rng(1)
  mu, sigma = fid.statistics(rng.normal(size=(500, 8)))
  assert abs(fid.frechet_distance(mu, sigma, mu, sigma)) < 1e-6
  # Diagonal covariances: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
  a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
  got = fid.frechet_distance([0, 0, 0], np.diag(a), [1, 2, 0], np.diag(b))
  assert got == pytest.approx(5.0 + 1.0 + 1.0 + 0.0)


def test_fid_statistics_files(tmp_path):
  mu, sigma = np.arange(3.0), np.eye(3)
  path = str(tmp_path / "stats.npz")
  fid.save_statistics(path, mu, sigma, count=10)
  got_mu, got_sigma = fid.load_statistics(path)
  np.testing.assert_array_equal(got_mu, mu)
  np.testing.assert_array_equal(got_sigma, sigma)
  bad = tmp_path / "bad.npz"
  np.savez(bad, mean=mu)
  with pytest.raises(ValueError, match=r"bad.npz: FID statistics need arrays 'mu' and 'sigma'"):
    fid.load_statistics(str(bad))
  (tmp_path / "junk.npz").write_bytes(b"not a zip")
  with pytest.raises(ValueError, match=r"junk.npz: not a readable .npz"):
    fid.load_statistics(str(tmp_path / "junk.npz"))


def test_inception_score_on_hand_made_logits():
  # Confident and spread evenly over 10 classes in every split: IS = 10.
  logits = np.full((100, 10), -1e4)
  logits[np.arange(100), np.arange(100) % 10] = 0.0
  mean, std = inception_score.inception_score(logits)
  assert mean == pytest.approx(10.0, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)
  # Always the same class: IS = 1.
  assert inception_score.inception_score(np.tile([5.0, 0.0, 0.0], (20, 1)))[0] == pytest.approx(1.0)
  # Two images, p = (0.9, 0.1) and (0.1, 0.9): p(y) = (0.5, 0.5), one split.
  logits = np.log([[0.9, 0.1], [0.1, 0.9]])
  kl = 0.9 * np.log(0.9 / 0.5) + 0.1 * np.log(0.1 / 0.5)
  assert inception_score.inception_score(logits, splits=1)[0] == pytest.approx(np.exp(kl))
  with pytest.raises(ValueError, match="IS needs"):
    inception_score.inception_score(np.zeros((5, 3)))


def test_r_precision_with_planted_embeddings():
  rng = np.random.default_rng(0)
  n, d, per = 3000, 32, 5
  sentences = rng.normal(size=(n * per, d))  # caption rows: image i has rows i*per..
  classes = np.repeat(np.arange(n) % 50, per)
  true_rows = np.arange(n) * per + rng.integers(per, size=n)
  negatives = r_precision.draw_negatives(classes, true_rows, rng)
  assert negatives.shape == (n, 99)
  assert not np.any(classes[negatives] == classes[true_rows][:, None])  # other classes only
  candidates = sentences[np.concatenate([true_rows[:, None], negatives], 1)]
  perfect = r_precision.cosine_hits(sentences[true_rows] * 3.0, candidates)  # scale-free
  assert r_precision.r_precision(perfect, rng) == (100.0, 0.0)
  random = r_precision.cosine_hits(rng.normal(size=(n, d)), candidates)
  mean, std = r_precision.r_precision(random, rng)
  assert 0.3 < mean < 2.0 and std > 0  # chance: 1 in 100


def test_r_precision_folds_are_shuffled_hit_rates():
  hits = np.array([1] * 50 + [0] * 50, bool)
  mean, std = r_precision.r_precision(hits, np.random.default_rng(0), folds=10)
  assert mean == pytest.approx(50.0)
  assert std > 0  # the shuffle spreads hits over the folds
  with pytest.raises(ValueError, match="at least 10 images"):
    r_precision.r_precision(hits[:5], np.random.default_rng(0))


def test_random_inception_is_labelled_uncalibrated_and_runs():
  net = inception_net.load("", image_size=75)
  assert not net.calibrated and net.label == inception_net.UNCALIBRATED
  images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
  pool, logits = net(images, batch_size=8)
  assert pool.shape == (3, 2048) and logits.shape == (3, 1008)
  assert np.all(np.isfinite(pool)) and pool.std() > 0
  # The same images give the same features in another batching.
  np.testing.assert_allclose(net(images[:2], batch_size=8)[0], pool[:2], rtol=1e-5, atol=1e-6)


def test_inception_weights_file_round_trip_and_errors(tmp_path):
  model = inception_net.model_for("pytorch-fid", 1008)
  variables = inception_net.random_weights(model, seed=3)
  path = str(tmp_path / "w.npz")
  inception_net.save_weights(path, variables, "pytorch-fid")
  net = inception_net.load(path, image_size=75)
  assert net.calibrated and "pytorch-fid" in net.label and "sha256" in net.label
  flat = inception_net.flatten(variables)
  key = "params/Mixed_7c/branch_pool/conv/kernel"
  np.testing.assert_array_equal(np.asarray(inception_net.flatten(net.variables)[key]), flat[key])
  del flat[key]
  broken = str(tmp_path / "broken.npz")
  np.savez(broken, **flat)
  with pytest.raises(inception_net.InceptionWeightsError,
                     match=r"broken.npz: does not fit .*missing \['params/Mixed_7c/branch_pool"):
    inception_net.load(broken)
  with pytest.raises(FileNotFoundError, match="convert fid_inception"):
    inception_net.load(str(tmp_path / "absent.npz"))
