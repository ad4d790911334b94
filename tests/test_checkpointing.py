"""Checkpoint retention and "best": metrics ranked after a restart."""

import threading

import jax
import jax.numpy as jnp
import pytest

from mirrorgan_jax.checkpointing import (CheckpointError, PhaseCheckpoints, shape_mismatches,
                                         stored_tree)


def _save(ckpt, step, metric):
  ckpt.save(step, {"x": jnp.full((2,), float(step))}, {"iteration": step}, metric=metric)


def test_best_is_ranked_by_metric_across_restarts(tmp_path):
  ckpt = PhaseCheckpoints(str(tmp_path), keep_latest=2, async_save=False)
  for step, metric in ((1, 5.0), (2, 1.0), (3, 3.0)):
    _save(ckpt, step, metric)
  assert ckpt.best_step() == 2
  ckpt.close()
  # A fresh manager (a restarted run) reads the metrics back from disk ...
  again = PhaseCheckpoints(str(tmp_path), keep_latest=2, async_save=False)
  assert again.best_step() == 2
  # ... and keeps the best while newer, worse checkpoints push out the old ones.
  for step, metric in ((4, 4.0), (5, 6.0)):
    _save(again, step, metric)
  assert again.steps() == [2, 4, 5]
  assert again.best_step() == 2
  again.close()


def test_a_checkpoint_without_metric_is_never_best(tmp_path):
  ckpt = PhaseCheckpoints(str(tmp_path), keep_latest=3, async_save=False)
  _save(ckpt, 1, 2.0)
  _save(ckpt, 2, None)
  assert ckpt.best_step() == 1
  ckpt.close()


def test_a_damaged_metric_file_loses_the_rank_not_the_folder(tmp_path):
  """Orbax fails to open a folder in which one metric file does not parse. A
  reader opens it and refuses "best" naming the file; a writer (training)
  moves the file aside and ranks the others."""
  ckpt = PhaseCheckpoints(str(tmp_path), keep_latest=3, async_save=False)
  for step, metric in ((1, 5.0), (2, 1.0), (3, 3.0)):
    _save(ckpt, step, metric)
  ckpt.close()
  damaged = tmp_path / "2" / "metrics" / "metrics"
  damaged.write_text('{"value": 1.')  # cut short
  reader = PhaseCheckpoints(str(tmp_path), keep_latest=3, async_save=False, writer=False)
  assert reader.steps() == [1, 2, 3]
  with pytest.raises(CheckpointError, match=f"not JSON: {damaged}"):
    reader.best_step()
  assert reader.restore(lambda meta: {"x": jnp.zeros((2,))}).step == 3
  reader.close()
  assert damaged.read_text() == '{"value": 1.'  # a reader changes nothing
  writer = PhaseCheckpoints(str(tmp_path), keep_latest=3, async_save=False)
  assert writer.steps() == [1, 2, 3] and writer.best_step() == 3
  writer.close()
  assert not damaged.exists()
  assert (tmp_path / "2" / "metrics" / "metrics.damaged").read_text() == '{"value": 1.'


def test_a_checkpoint_of_another_model_config_is_named_so_and_kept(tmp_path):
  ckpt = PhaseCheckpoints(str(tmp_path), keep_latest=2, async_save=False)
  _save(ckpt, 1, None)  # "x" of shape (2,)
  other = lambda meta: {"x": jax.ShapeDtypeStruct((3,), jnp.float32)}  # noqa: E731
  with pytest.raises(CheckpointError) as e:
    ckpt.restore(other)
  assert "written with another model config" in str(e.value)
  assert "x: stored (2,), this config (3,)" in str(e.value)  # from the metadata, no read
  assert "damaged" not in str(e.value)
  assert ckpt.steps() == [1]  # nothing set aside or lost
  ckpt.close()


def test_shape_mismatches_names_every_differing_and_missing_array(tmp_path):
  ckpt = PhaseCheckpoints(str(tmp_path), keep_latest=2, async_save=False)
  ckpt.save(1, {"params": {"a": jnp.zeros((2, 3)), "b": jnp.zeros(4)},
                "opt": {"a": jnp.zeros((2, 3))}, "key": jax.random.key(0)}, {"iteration": 1})
  ckpt.close()
  abstract = {"params": {"a": jax.ShapeDtypeStruct((2, 5), jnp.float32),
                         "c": jax.ShapeDtypeStruct((1,), jnp.float32)},
              "opt": {"a": jax.ShapeDtypeStruct((2, 5), jnp.float32)},
              "key": jax.eval_shape(lambda: jax.random.key(1))}
  assert shape_mismatches(stored_tree(str(tmp_path / "1" / "state")), abstract) == [
      "params.a: stored (2, 3), this config (2, 5)",
      "params.b: stored (4,), not in this config",
      "params.c: not stored, this config (1,)",
      "opt.a: stored (2, 3), this config (2, 5)"]


def test_a_checkpoint_without_readable_metadata_is_left_to_the_restore(tmp_path):
  ckpt = PhaseCheckpoints(str(tmp_path), keep_latest=2, async_save=False)
  _save(ckpt, 1, None)
  ckpt.close()
  state = tmp_path / "1" / "state"
  for f in state.rglob("_METADATA"):  # the tree metadata only; the arrays stay
    f.unlink()
  assert shape_mismatches(stored_tree(str(state)),
                          {"x": jax.ShapeDtypeStruct((3,), jnp.float32)}) == []
  assert shape_mismatches(stored_tree(str(tmp_path / "missing")), {}) == []


def test_a_gan_checkpoint_from_before_the_image_encoder_field_restores(tmp_path):
  """GAN checkpoints written before `GANState.image_encoder` and
  `GANState.g_ema_stats` (and `edge_d`) existed hold no such fields; with
  `loss.damsm_weight`, `gan.ema_bn_batches` and `loss.edge_d_weight` 0 they are
  {} (no arrays), and such a checkpoint restores as before, the fields given
  back empty. With the DAMSM term, the EMA generator's own statistics or the
  edge critic on, the field's arrays are missing: another config, named so."""
  from configs import tiny  # pylint: disable=import-outside-toplevel
  from mirrorgan_jax import factory, gan_state  # pylint: disable=import-outside-toplevel
  config = tiny.get_config()
  config.loss.damsm_weight = 0.0
  config.gan.ema_bn_batches = 0
  models = factory.create_models(config)
  state = gan_state.init_gan_state(models, config, jax.random.key(0))
  assert state.image_encoder == {} and state.g_ema_stats == {} and state.edge_d == {}
  old = {f: getattr(state, f) for f in ("step", "g", "g_ema", "d", "text_encoder", "stream")}
  ckpt = PhaseCheckpoints(str(tmp_path), keep_latest=2, async_save=False)
  ckpt.save(7, {"state": old, "key": jax.random.key(3)}, {"iteration": 7})
  shapes = lambda c: {  # noqa: E731
      "state": jax.eval_shape(lambda k: gan_state.init_gan_state(
          factory.create_models(c), c, k), jax.random.key(0)),
      "key": jax.eval_shape(lambda: jax.random.key(1))}
  out = ckpt.restore(lambda meta: shapes(config))
  assert out.step == 7 and isinstance(out.state["state"], gan_state.GANState)
  assert out.state["state"].image_encoder == {} and out.state["state"].g_ema_stats == {}
  assert out.state["state"].edge_d == {}
  for a, b in zip(jax.tree.leaves(out.state["state"]), jax.tree.leaves(state)):
    assert (jax.numpy.asarray(a) == b).all()
  config.loss.damsm_weight = 5.0
  with pytest.raises(CheckpointError, match="image_encoder.params.* not stored"):
    ckpt.restore(lambda meta: shapes(config))
  config.loss.damsm_weight = 0.0
  config.gan.ema_bn_batches = 2
  with pytest.raises(CheckpointError, match="g_ema_stats.h_net1.* not stored"):
    ckpt.restore(lambda meta: shapes(config))
  config.gan.ema_bn_batches = 0
  config.loss.edge_d_weight = 0.3
  with pytest.raises(CheckpointError, match="edge_d.params.* not stored"):
    ckpt.restore(lambda meta: shapes(config))
  assert ckpt.steps() == [7]
  ckpt.close()


def test_a_reader_leaves_a_save_in_progress(tmp_path):
  """`evaluate` or `generate` opening a training run's folder while it saves:
  Orbax's clean-up of unfinished checkpoints at open deleted the save's
  temporary folder, and the run failed on it. Only a writer clears them."""
  ckpt = PhaseCheckpoints(str(tmp_path), keep_latest=3, async_save=False)
  _save(ckpt, 1, 1.0)
  ckpt.close()
  unfinished = tmp_path / "2.orbax-checkpoint-tmp" / "state.orbax-checkpoint-tmp"
  unfinished.mkdir(parents=True)  # as a running save leaves it
  reader = PhaseCheckpoints(str(tmp_path), keep_latest=3, async_save=False, writer=False)
  assert reader.steps() == [1]
  assert reader.restore(lambda meta: {"x": jnp.zeros((2,))}).step == 1
  cleanup = getattr(reader.manager, "_cleanup_tmp_directory_future", None)
  if cleanup is not None:  # Orbax clears in the background: let it finish
    cleanup.result()
  reader.close()
  assert unfinished.is_dir()
  # A writer (a restarted run) clears what a killed save left, as before.
  writer = PhaseCheckpoints(str(tmp_path), keep_latest=3, async_save=False)
  _save(writer, 2, 1.0)
  writer.close()
  assert not (tmp_path / "2.orbax-checkpoint-tmp").exists()
  again = PhaseCheckpoints(str(tmp_path), writer=False)
  assert again.steps() == [1, 2]
  again.close()


def test_two_phases_saving_at_once_from_two_threads_both_finish(tmp_path):
  """Orbax keys an asynchronous save's signals by one process-wide operation id:
  two managers saving at once from two threads (damsm and stream trained at
  once) waited on each other's signals until a 300 s timeout. Saves are now
  taken one at a time; every save of both ends."""
  steps = 8

  def saves(name, out):
    ck = PhaseCheckpoints(str(tmp_path / name), keep_latest=steps)
    try:
      for step in range(steps):
        ck.save(step, {"x": jnp.full((64,), step, jnp.float32)}, {"phase": name}, metric=1.0)
      ck.wait()
      out[name] = ck.steps()
    finally:
      ck.close()

  out = {}
  threads = [threading.Thread(target=saves, args=(n, out), daemon=True) for n in ("a", "b")]
  for t in threads:
    t.start()
  for t in threads:
    t.join(timeout=120)  # stuck: the test fails here, not after Orbax's timeout
  assert not any(t.is_alive() for t in threads)
  assert out == {"a": list(range(steps)), "b": list(range(steps))}
