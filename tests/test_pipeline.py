"""The grain input pipeline on the shapes source: the batch contract,
determinism, exact resume, per-process sharding, mismatched captions, and one
training step fed by it on 8 devices."""

import pickle

import jax
import numpy as np
import pytest

from configs import shapes as shapes_config
from configs import tiny
from mirrorgan_jax import factory, gan_state, gan_step, parallel
from mirrorgan_jax.data import pipeline, shapes
from mirrorgan_jax.data.sources import ShapesSource
from mirrorgan_jax.data.vocab import tokenize


def _equal(a, b) -> bool:
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))


@pytest.fixture(scope="module")
def config():
  return tiny.get_config()


def test_shapes_source_matches_the_dataset():
  src = ShapesSource("test", size=32, length=20, seed=3)
  ex = src.example(5)
  ref = shapes.example("test", 5, 3, 32)
  np.testing.assert_array_equal(np.asarray(ex.picture()), ref.image)
  assert [src.vocab.decode(c) for c in ex.caption_ids] == [
      " ".join(tokenize(c)) for c in ref.captions]
  assert src.captions(5) == ref.captions
  assert ex.class_id == src.class_id(5) == shapes.composition_id(ref.scene)
  assert len(src.vocab) == 45 == shapes_config.get_config().text.vocab_size
  with pytest.raises(IndexError, match="out of range"):
    src.example(20)


def _batches(source, near_misses, n=6):
  ds = pipeline.train_dataset(source, batch_size=8, sizes=(16, 32), words_num=6, seed=5,
                              near_misses=near_misses)
  ev = pipeline.eval_dataset(source, batch_size=8, sizes=(16, 32), words_num=6)
  return [ds[i] for i in range(n)] + [ev[i] for i in range(3)]


@pytest.mark.parametrize("near_misses", [False, True])
def test_the_cache_changes_no_batch_and_keeps_to_its_budget(near_misses):
  """Kept examples give bitwise the batches of freshly rendered ones, on a
  first pass (filling the cache) and a second (reading it); the cache stops at
  its budget, its arrays cannot be written, and a pickled copy (a grain worker)
  starts empty."""
  fresh = ShapesSource("train", 32, 24, 1, stage_sizes=(16, 32))
  kept = ShapesSource("train", 32, 24, 1, stage_sizes=(16, 32), cache_mb=1)
  want = _batches(fresh, near_misses)
  assert not fresh._made
  for _ in range(2):
    assert all(_equal(a, b) for a, b in zip(_batches(kept, near_misses), want))
  assert sorted(kept._made) == list(range(24))  # 24 x (16² + 32²) x 3 bytes < 1 MB
  assert kept._cached_bytes == 24 * (16 * 16 + 32 * 32) * 3
  made = kept._made[3]
  assert made.class_id == fresh.class_id(3) and not made.stages[0].flags.writeable
  assert all(np.array_equal(a, b) for a, b in zip(made.caption_ids, fresh.caption_ids(3)))
  small = ShapesSource("train", 32, 24, 1, stage_sizes=(16, 32), cache_mb=4 * 3840 / 2**20)
  assert all(_equal(a, b) for a, b in zip(_batches(small, near_misses), want))
  assert len(small._made) == 4
  assert pickle.loads(pickle.dumps(kept))._made == {}


def test_every_phase_of_a_job_reads_one_shapes_source(config):
  """The cache outlives a phase: each phase's pipeline gets the same source."""
  a, _ = pipeline.from_config(config)
  b, _ = pipeline.from_config(config)
  other = config.copy_and_resolve_references()
  other.data.shapes.seed = 1
  c, _ = pipeline.from_config(other)
  assert a is b and a is not c
  assert a.stage_sizes == (16, 32) and a._cache_bytes == config.data.shapes.cache_mb * 2**20


def test_composition_ids_identify_what_captions_say():
  ids = {}
  for i in range(600):
    scene = shapes.sample_scene("train", i)
    key = tuple((o.color, o.shape) + ((o.size, o.position) if scene.relation is None else ())
                for o in scene.objects) + (scene.relation,)
    ids.setdefault(shapes.composition_id(scene), set()).add(key)
  assert all(len(v) == 1 for v in ids.values())  # one id, one description
  assert all(0 <= i < 828 for i in ids)


def test_batch_contract(config):
  source, ds = pipeline.from_config(config)
  b = ds[0]
  assert [x.shape for x in b["images"]] == [(8, 16, 16, 3), (8, 32, 32, 3)]
  assert b["captions"].shape == b["wrong_captions"].shape == (8, 6)
  for caps, lens in ((b["captions"], b["caption_lens"]),
                     (b["wrong_captions"], b["wrong_caption_lens"])):
    assert caps.dtype == lens.dtype == np.int32
    assert ((lens >= 1) & (lens <= 6)).all()
    # Ids up to the length, padding after it.
    assert all((c[:n] > 0).all() and (c[n:] == 0).all() for c, n in zip(caps, lens))
  for row in range(8):
    # The caption is an ordered subset of one of the image's captions.
    words = source.vocab.decode(b["captions"][row]).split()
    options = [tokenize(c) for c in source.captions(int(b["indices"][row]))]
    assert any(_ordered_subset(words, o) for o in options)
  # Images are the source's, resized per stage.
  ex = source.example(int(b["indices"][0]))
  np.testing.assert_array_equal(b["images"][1][0], np.asarray(ex.picture()))


def _ordered_subset(words, sentence) -> bool:
  it = iter(sentence)
  return all(w in it for w in words)


def test_mismatched_captions_describe_another_composition(config):
  source, ds = pipeline.from_config(config)
  for step in range(20):
    b = ds[step]
    for i, j in zip(b["indices"], b["wrong_indices"]):
      assert i != j and source.class_id(int(i)) != source.class_id(int(j))


def test_near_miss_batches_pair_each_image_with_its_near_miss(config):
  c = tiny.get_config()
  c.data.near_misses = True
  source, ds = pipeline.from_config(c)
  twins = 0
  for step in range(4):
    b = ds[step]
    assert (b["indices"][0::2] == b["indices"][1::2]).all()
    for row in range(0, 8, 2):
      index = int(b["indices"][row])
      # The even row is the image itself, the odd one its near miss or, where
      # none avoids the held-out pairs, the image again.
      np.testing.assert_array_equal(b["images"][1][row], np.asarray(source.example(index).picture()))
      if b["class_ids"][row + 1] != b["class_ids"][row]:
        twins += 1
        assert not np.array_equal(b["images"][1][row + 1], b["images"][1][row])
      else:
        np.testing.assert_array_equal(b["images"][1][row + 1], b["images"][1][row])
  assert twins >= 12  # of 16 pairs
  assert _equal(ds[2], pipeline.from_config(c)[1][2])  # deterministic
  with pytest.raises(ValueError, match="must be a multiple of 2"):
    pipeline.train_dataset(source, batch_size=6, sizes=(32,), words_num=6, seed=0,
                           process_index=0, process_count=2, near_misses=True)


@pytest.mark.parametrize("every", [2, 4])
def test_colour_twins_are_the_row_before_in_other_colours(every):
  c = tiny.get_config()
  c.data.colour_twins = True
  c.gan.twin_every = every
  source, ds = pipeline.from_config(c)
  seen = set()
  for step in range(4):
    b = ds[step]
    for row in range(8):
      index = int(b["indices"][row])
      if row % every != every - 1:  # an image of the stream, each once
        np.testing.assert_array_equal(b["images"][1][row],
                                      np.asarray(source.example(index).picture()))
        assert index not in seen
        seen.add(index)
        continue
      # The row before in other colours, the outline to the sub-pixel unchanged
      # (at the rendered size; a smaller stage's resize may round a faint pixel
      # of one colour to 0).
      assert index == b["indices"][row - 1]
      assert not np.array_equal(b["images"][1][row], b["images"][1][row - 1])
      np.testing.assert_array_equal(b["images"][1][row].max(-1) > 0,
                                    b["images"][1][row - 1].max(-1) > 0)
  assert len(seen) == 4 * 8 * (every - 1) // every
  assert _equal(ds[2], pipeline.from_config(c)[1][2])  # deterministic
  with pytest.raises(ValueError, match="not both"):
    pipeline.train_dataset(source, batch_size=8, sizes=(32,), words_num=6, seed=0,
                           near_misses=True, colour_twins=True)
  with pytest.raises(ValueError, match="must be a multiple of 3"):
    pipeline.train_dataset(source, batch_size=8, sizes=(32,), words_num=6, seed=0,
                           colour_twins=True, twin_every=3)


def test_colour_twins_reach_only_the_gan_phase():
  from mirrorgan_jax.trainer import phase_config
  c = tiny.get_config()
  c.loss.colour_twin_weight = 1.0
  assert phase_config(c, "gan").data.colour_twins
  assert not phase_config(c, "damsm").data.colour_twins
  assert not phase_config(c, "stream").data.colour_twins


def test_near_misses_reach_only_the_damsm_phase():
  from mirrorgan_jax.trainer import phase_config
  c = tiny.get_config()
  c.damsm.near_misses = True
  assert phase_config(c, "damsm").data.near_misses
  assert not phase_config(c, "stream").data.near_misses
  assert not phase_config(c, "gan").data.near_misses


def test_same_seed_same_stream_other_seed_other_stream(config):
  _, a = pipeline.from_config(config)
  _, b = pipeline.from_config(config)
  assert all(_equal(a[s], b[s]) for s in (0, 3, 17))
  c2 = tiny.get_config()
  c2.seed = 1
  _, c = pipeline.from_config(c2)
  assert not _equal(a[0], c[0])


def test_epochs_cover_the_split_and_reshuffle(config):
  _, ds = pipeline.from_config(config)  # 64 examples, batch 8: 8 steps per epoch
  epoch0 = np.concatenate([ds[s]["indices"] for s in range(8)])
  epoch1 = np.concatenate([ds[s]["indices"] for s in range(8, 16)])
  assert sorted(epoch0) == sorted(epoch1) == list(range(64))
  assert not np.array_equal(epoch0, epoch1)


@pytest.mark.parametrize("workers,prefetch", [(0, 0), (0, 2), (2, 0), (2, 2)])
def test_resumed_iterator_yields_exactly_the_same_batches(config, workers, prefetch):
  _, ds = pipeline.from_config(config)
  it = pipeline.iterator(ds, workers=workers, prefetch=prefetch)
  for _ in range(3):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(4)]
  resumed = pipeline.iterator(ds, workers=workers, prefetch=prefetch)
  resumed.set_state(state)
  got = [next(resumed) for _ in range(4)]
  assert all(_equal(x, y) for x, y in zip(expected, got))
  assert _equal(expected[0], ds[3])  # the same as random access to batch 3
  for i in (it, resumed):
    if hasattr(i, "close"):
      i.close()


def test_processes_read_disjoint_rows_of_the_same_global_batch(config):
  _, whole = pipeline.from_config(config, process_index=0, process_count=1)
  parts = [pipeline.from_config(config, process_index=p, process_count=4)[1] for p in range(4)]
  for step in (0, 5, 9):
    joined = jax.tree.map(lambda *xs: np.concatenate(xs), *[p[step] for p in parts])
    assert _equal(joined, whole[step])
    assert parts[0][step]["captions"].shape == (2, 6)
  with pytest.raises(ValueError, match=r"batch_size \(8\) must be divisible by the number "
                     r"of processes \(3\)"):
    pipeline.from_config(config, process_index=0, process_count=3)


def test_eval_dataset_visits_each_caption_once(config):
  source, ds = pipeline.from_config(config, "test_heldout", train=False)
  seen = [(int(i), int(k)) for b in ds for i, k, v in
          zip(b["indices"], b["caption_index"], b["valid"]) if v]
  assert seen == [(i, k) for i in range(16) for k in range(5)]
  b = ds[0]
  ids = source.example(0).caption_ids[0][:6]
  np.testing.assert_array_equal(b["captions"][0][:len(ids)], ids)  # first words, no dropout


def test_one_training_step_on_pipeline_batches_over_8_devices(config):
  config = config.copy_and_resolve_references()
  config.model.num_stages = 1  # the same path with half the step to compile
  models = factory.create_models(config)
  mesh = parallel.make_mesh()
  assert mesh.size == 8
  state = parallel.jit_init(lambda k: gan_state.init_gan_state(models, config, k), mesh)(
      jax.random.key(0))
  step = parallel.jit_train_step(gan_step.make_train_step(models, config), mesh)
  _, ds = pipeline.from_config(config)
  batch = pipeline.device_batch(mesh, ds[0])
  (img,) = batch["images"]
  assert img.dtype == np.float32 and img.sharding.spec == parallel.data_sharded(mesh).spec
  assert float(img.min()) >= -1.0 and float(img.max()) <= 1.0
  np.testing.assert_allclose(np.asarray(img), ds[0]["images"][0] / 127.5 - 1, atol=1e-6)
  state, metrics = step(state, batch, jax.random.key(1))
  assert int(state.step) == 1 and all(np.isfinite(v) for v in jax.device_get(metrics).values())
