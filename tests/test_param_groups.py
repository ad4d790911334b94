"""param_groups: splitting frozen from trained parameters, and `graft`, which
staged growth uses to carry a trained smaller generator into a larger one.

The graft tests fill the real tiny GAN states (their structure from
`jax.eval_shape`, so nothing is compiled) with values unique to each element
of each leaf, so that a leaf taken from the wrong tree, the wrong path or in
the wrong order is told apart."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import tiny
from mirrorgan_jax import factory, gan_state, param_groups

paths = jax.tree_util.tree_flatten_with_path
keystr = jax.tree_util.keystr


def filled(abstract, start: float, count: int):
  """`abstract` with every element a distinct number from `start` on, and
  every integer scalar (Adam's count) equal to `count`."""
  leaves, treedef = jax.tree.flatten(abstract)
  out, offset = [], start
  for x in leaves:
    if jnp.issubdtype(x.dtype, jnp.integer):
      out.append(np.full(x.shape, count, x.dtype))
    else:
      out.append((offset + np.arange(np.prod(x.shape))).reshape(x.shape).astype(x.dtype))
      offset += np.prod(x.shape)
  return jax.tree.unflatten(treedef, out)


def abstract_state(stages: int):
  c = tiny.get_config()
  c.model.num_stages = stages
  models = factory.create_models(c)
  return jax.eval_shape(lambda k: gan_state.init_gan_state(models, c, k), jax.random.key(0))


@pytest.fixture(scope="module")
def grown():
  """(trained 1-stage G state, fresh 2-stage one) with distinguishable values:
  trained elements count up from 1, fresh ones from -1e6 (exact in float32
  for these sizes), Adam counts 7 and 0."""
  small, big = abstract_state(1), abstract_state(2)
  trained = filled(small, 1.0, 7)
  fresh = filled(big, -1e6, 0)
  return trained, fresh


def check_graft(fresh_tree, trained_tree):
  """graft(fresh, trained), checked leaf by leaf: the fresh structure, every
  trained leaf at its own path, fresh values everywhere else."""
  out = param_groups.graft(fresh_tree, trained_tree)
  assert jax.tree.structure(out) == jax.tree.structure(fresh_tree)
  trained = {keystr(p): x for p, x in paths(trained_tree)[0]}
  fresh = {keystr(p): x for p, x in paths(fresh_tree)[0]}
  from_trained = 0
  for p, x in paths(out)[0]:
    k = keystr(p)
    expected = trained.get(k, fresh[k])
    from_trained += k in trained
    assert np.asarray(x).dtype == np.asarray(expected).dtype, k
    np.testing.assert_array_equal(x, expected, err_msg=k)
  assert from_trained == len(trained)  # nothing trained was dropped
  assert len(fresh) > len(trained)  # and the new stage kept its own values
  return out, trained


def test_graft_keeps_trained_generator_parameters(grown):
  trained, fresh = grown
  out, _ = check_graft(fresh.g.params, trained.g.params)
  assert set(out) - set(trained.g.params) == {"h_net2", "img_net2"}
  np.testing.assert_array_equal(out["h_net2"]["conv"]["kernel"],
                                fresh.g.params["h_net2"]["conv"]["kernel"])


def test_graft_keeps_batchnorm_statistics(grown):
  trained, fresh = grown
  out, kept = check_graft(fresh.g.batch_stats, trained.g.batch_stats)
  assert any(k.endswith("['mean']") for k in kept) and any(k.endswith("['var']") for k in kept)
  np.testing.assert_array_equal(out["h_net1"]["fc_bn"]["var"],
                                trained.g.batch_stats["h_net1"]["fc_bn"]["var"])


def test_graft_keeps_the_ema(grown):
  trained, fresh = grown
  check_graft(fresh.g_ema, trained.g_ema)


def test_graft_keeps_adam_moments_and_count(grown):
  trained, fresh = grown
  out, _ = check_graft(fresh.g.opt_state, trained.g.opt_state)
  adam = out[0]
  assert isinstance(adam, optax.ScaleByAdamState)  # the namedtuple is rebuilt, not a tuple
  assert int(adam.count) == 7  # bias correction continues from the trained count
  np.testing.assert_array_equal(adam.mu["h_net1"]["fc"]["kernel"],
                                trained.g.opt_state[0].mu["h_net1"]["fc"]["kernel"])
  np.testing.assert_array_equal(adam.nu["img_net2"]["conv"]["kernel"],
                                fresh.g.opt_state[0].nu["img_net2"]["conv"]["kernel"])


def test_graft_refuses_what_does_not_fit():
  fresh = {"a": np.zeros((2, 3)), "b": (np.zeros(1), np.zeros(2))}
  with pytest.raises(ValueError, match=r"/a: trained shape \(3, 2\) != grown shape \(2, 3\)"):
    param_groups.graft(fresh, {"a": np.zeros((3, 2))})
  with pytest.raises(ValueError, match=r"tree: trained entries \['c'\] do not exist"):
    param_groups.graft(fresh, {"c": np.zeros(1)})
  with pytest.raises(ValueError, match=r"/b: tuple of 1 cannot fill tuple of 2"):
    param_groups.graft(fresh, {"b": (np.zeros(1),)})


def test_split_and_merge_are_inverse_by_top_level_name():
  params = {"inception": {"w": 1}, "proj": {"w": 2}, "emb": {"w": 3}}
  trained, held = param_groups.split(params, ("inception",))
  assert trained == {"proj": {"w": 2}, "emb": {"w": 3}} and held == {"inception": {"w": 1}}
  assert param_groups.merge(trained, held) == params
