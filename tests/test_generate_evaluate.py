"""Sampling and evaluation on a tiny trained workdir: the Python API, the two
command lines, determinism, caption errors, and FID ranking checkpoints
during training."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from configs import tiny
from mirrorgan_jax import evaluate, generate, trainer
from mirrorgan_jax.config_check import stage_sizes
from mirrorgan_jax.data import sources
from mirrorgan_jax.metrics import inception_net
from mirrorgan_jax.sampling import batched, example_keys


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("trained"))
  trainer.run(tiny.get_config(), wd)
  return wd


@pytest.fixture(scope="module")
def model(workdir):
  return generate.TextToImage(workdir)


def test_sample_is_deterministic_per_seed_and_independent_of_batching(workdir, model):
  texts = ["a big red circle on the left", "a small blue square at the top",
           "a green disk to the left of a white box"]
  a = model.sample(texts, seed=3)
  assert a.shape == (3, 32, 32, 3) and a.dtype == np.uint8
  np.testing.assert_array_equal(model.sample(texts, seed=3), a)
  assert not np.array_equal(model.sample(texts, seed=4), a)
  one = generate.TextToImage(workdir, devices=jax.devices()[:1], batch_size=1)
  b = one.sample(texts, seed=3)
  assert np.abs(a.astype(int) - b).max() <= 1  # same keys; only float reassociation differs
  assert model.step == 2 and model.path.endswith(os.path.join("checkpoints", "gan", "2"))


def test_generate_returns_stages_attention_and_words(model):
  out = model.generate(["a big red circle on the left"], seed=0, samples=2)
  assert [s.shape for s in out.images] == [(1, 2, 16, 16, 3), (1, 2, 32, 32, 3)]
  # words_num is 6 in the tiny config: the first six known words are used.
  assert out.words == [["a", "big", "red", "circle", "on", "the"]]
  assert out.attention[0].shape == (1, 2, 6, 16, 16)  # at the refined stage's input size
  assert not np.array_equal(out.images[-1][0, 0], out.images[-1][0, 1])


def test_unknown_words_warn_and_empty_captions_fail(model):
  with pytest.warns(UserWarning, match=r"unknown words dropped: xylophone, zebra"):
    model.sample(["a zebra circle xylophone"], seed=0)
  with pytest.raises(ValueError, match=r"caption 1 'zebras galore' has no word of the vocabulary"):
    model.sample(["a circle", "zebras galore"])
  with pytest.raises(ValueError, match="no captions"):
    model.sample([])


def test_generate_cli_writes_pngs_deterministically(workdir, tmp_path, capsys):
  captions = tmp_path / "captions.txt"
  captions.write_text("a big red circle on the left\na small zebra box\n\n")
  args = ["--workdir", workdir, "--captions", str(captions), "--seed", "7"]
  assert generate.main(args + ["--out", str(tmp_path / "a")]) == 0
  assert "warning: " in capsys.readouterr().err  # 'zebra' named on stderr
  assert sorted(os.listdir(tmp_path / "a")) == ["000000.png", "000001.png", "captions.txt",
                                                "generate.json"]
  assert Image.open(tmp_path / "a" / "000000.png").size == (32, 32)
  assert generate.main(args + ["--out", str(tmp_path / "b"), "--samples", "2", "--all-stages",
                               "--attention"]) == 0
  names = set(os.listdir(tmp_path / "b"))
  for stem in ("000000_0", "000000_1", "000001_0", "000001_1"):
    assert {f"{stem}.png", f"{stem}_stage0.png", f"{stem}_stage1.png",
            f"{stem}_attention_stage1.png"} <= names
  assert generate.main(args + ["--out", str(tmp_path / "c")]) == 0
  for name in ("000000.png", "000001.png"):
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "c" / name).read_bytes()
  # One sample of caption 0 is the same image whatever else was asked for.
  assert np.array_equal(np.asarray(Image.open(tmp_path / "a" / "000000.png")),
                        np.asarray(Image.open(tmp_path / "b" / "000000_0.png")))


def test_generate_cli_names_the_bad_line(workdir, tmp_path, capsys):
  bad = tmp_path / "bad.txt"
  bad.write_text("a red circle\n\na blue box\n")
  assert generate.main(["--workdir", workdir, "--captions", str(bad), "--out",
                        str(tmp_path / "o")]) == 2
  assert f"{bad}:2: empty caption" in capsys.readouterr().err
  bad.write_text("a red circle\nzebra\n")
  assert generate.main(["--workdir", workdir, "--captions", str(bad), "--out",
                        str(tmp_path / "o")]) == 2
  assert f"{bad}:2 'zebra' has no word of the vocabulary" in capsys.readouterr().err


def test_generate_cli_checks_its_arguments_before_sampling(workdir, tmp_path, capsys):
  out = tmp_path / "taken.png"
  out.write_bytes(b"not a folder")
  assert generate.main(["--workdir", workdir + "-absent", "--text", "a red circle", "--out",
                        str(out), "--batch-size", "-2"]) == 2  # refused before the workdir is read
  err = capsys.readouterr().err
  assert f"--out {out}: is a file, not a folder" in err and "--batch-size=-2: must be at least 1" in err
  assert out.read_bytes() == b"not a folder"


def test_the_sampling_noise_is_the_runs_unless_given_and_is_recorded(workdir, model, tmp_path,
                                                                     capsys):
  texts = ["a big red circle on the left", "a small blue square at the top"]
  z_scale, ca_noise = model.config.gan.sample_z_scale, model.config.gan.sample_ca_noise
  assert (z_scale, ca_noise) != (1.0, 1.0)  # tiny keeps the shapes default's
  same = generate.TextToImage(workdir, z_scale=z_scale, ca_noise=ca_noise)
  np.testing.assert_array_equal(same.sample(texts, seed=2), model.sample(texts, seed=2))
  official = generate.TextToImage(workdir, z_scale=1, ca_noise=1)
  assert official.sampling_noise() == {"z_scale": 1.0, "ca_noise": 1.0}
  assert not np.array_equal(official.sample(texts, seed=2), model.sample(texts, seed=2))
  args = ["--workdir", workdir, "--text", texts[0], "--out", str(tmp_path / "o")]
  assert generate.main(args + ["--z-scale", "1", "--ca-noise", "1"]) == 0
  with open(tmp_path / "o" / "generate.json") as f:
    assert json.load(f)["sampling"] == {"z_scale": 1.0, "ca_noise": 1.0}
  assert generate.main(args + ["--z-scale", "-1"]) == 2
  assert "z_scale (--z-scale) = -1.0: must be a number >= 0" in capsys.readouterr().err


def test_sampling_falls_back_from_a_damaged_newest_checkpoint(workdir, tmp_path, capsys):
  """As training does: the newest checkpoint damaged (a metadata file deleted,
  or its data files truncated), the next older one is used, and nothing in the run's
  folder is moved. An empty checkpoints/gan reads like a missing one."""
  for damage in ("metadata", "truncate"):
    copy = tmp_path / damage
    shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns("eval", "tb", "samples"))
    gan = copy / "checkpoints" / "gan"
    steps = sorted(int(p.name) for p in gan.iterdir() if p.name.isdigit())
    newest = gan / str(steps[-1])
    if damage == "metadata":
      os.remove(newest / "state" / "_METADATA")
    else:
      # Every data file, cut in half: which file holds which array varies
      # from run to run (Orbax writes them from several threads).
      for data in (newest / "state").glob("ocdbt.process_*/d/*"):
        data.write_bytes(data.read_bytes()[:data.stat().st_size // 2])
    assert generate.TextToImage(str(copy)).step == steps[-2], damage
    assert sorted(p.name for p in gan.iterdir()) == [str(s) for s in steps]
  empty = tmp_path / "empty"
  (empty / "checkpoints" / "gan").mkdir(parents=True)
  (tmp_path / "none").mkdir()
  for where in (empty, tmp_path / "none"):
    assert generate.main(["--workdir", str(where), "--text", "a red circle", "--out",
                          str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "not a workdir with checkpoints/gan" in err and "Traceback" not in err, err


def test_evaluate_cli_writes_the_report_deterministically(workdir, capsys):
  args = ["--workdir", workdir, "--metrics", "is,fid,rprecision,alignment",
          "--num-images", "20", "--seed", "1"]
  assert evaluate.main(args) == 0
  out = capsys.readouterr().out
  # One IS and one FID line, each labelled: a table without them must fail
  # here rather than pass for want of lines to check.
  for metric in ("IS", "FID"):
    lines = [line for line in out.splitlines() if line.split()[:1] == [metric]]
    assert len(lines) == 1, (metric, out)
    assert inception_net.UNCALIBRATED in lines[0], lines[0]
  path = os.path.join(workdir, "eval", "2.json")
  with open(path) as f:
    first = json.load(f)
  m = first["metrics"]
  assert set(m) == {"is", "fid", "rprecision", "alignment"}
  noise = tiny.get_config().gan
  assert first["sampling"] == {"z_scale": noise.sample_z_scale, "ca_noise": noise.sample_ca_noise}
  assert "sampling noise scaled: z " in out  # tiny keeps the shapes default's
  assert m["is"]["mean"] >= 1.0 and np.isfinite(m["fid"]["value"])
  assert 0.0 <= m["rprecision"]["mean"] <= 100.0 and m["rprecision"]["candidates"] == 100
  assert set(m["alignment"]) == {"test", "test_heldout", "test_paraphrased",
                                 "test_heldout_paraphrased"}
  assert os.path.exists(m["fid"]["real_statistics"])  # cached for the next run
  # Again without alignment (equal to the training report: tested below).
  assert evaluate.main([a.replace(",alignment", "") for a in args]) == 0
  with open(path) as f:
    second = json.load(f)
  assert set(second["metrics"]) == {"is", "fid", "rprecision"}
  for k in ("is", "fid", "rprecision"):
    assert second["metrics"][k] == first["metrics"][k], k


def test_the_measuring_job_equals_sampling_then_measuring(workdir, model):
  """evaluate's one program per batch (sample, uint8, Inception, DAMSM image
  codes) gives the features of the images `sample` returns, measured
  separately, in order: 11 captions over batches of 8 with the last padded."""
  texts = [f"a {size} {color} circle on the left" for size in ("big", "small")
           for color in ("red", "green", "blue", "white", "yellow", "purple")][:11]
  ids, lens = model.encode(texts)
  keys = example_keys(jax.random.key(5), np.arange(len(ids)))
  images = np.concatenate(list(model.last_stage_images(ids, lens, keys)))
  net = inception_net.load(None, image_size=75, mesh=model.mesh)
  damsm = evaluate._DamsmCodes(workdir, model)
  want = dict(zip(("pool", "logits"), net(images)))
  want["codes"] = np.asarray(jax.jit(damsm.image_codes)(damsm.image_vars, images))
  job = evaluate.measuring_job(model.sample_fn, net.forward, damsm.image_codes)
  out = list(batched(job, (model.params, net.variables, damsm.image_vars), model.mesh,
                     model.batch_size, ids, lens, keys))
  assert model.batch_size == 8 and [len(o["pool"]) for o in out] == [8, 3]
  for k, v in want.items():
    got = np.concatenate([o[k] for o in out])
    assert got.shape == v.shape and np.abs(v).max() > 0, k
    np.testing.assert_allclose(got, v, rtol=1e-5, atol=1e-5 * np.abs(v).max(), err_msg=k)


def test_evaluate_alignment_matches_the_training_report(workdir):
  report = evaluate.evaluate(workdir, ["alignment"], seed=0)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    logged = [json.loads(line) for line in f]
  final = [line for line in logged if "alignment/test/color" in line][-1]
  assert len(report["metrics"]["alignment"]) == 4
  for split, scores in report["metrics"]["alignment"].items():
    for attr, value in scores.items():
      assert final[f"alignment/{split}/{attr}"] == pytest.approx(value), (split, attr)


def test_evaluate_refuses_bad_requests(workdir):
  with pytest.raises(ValueError, match=r"unknown \['bleu'\]"):
    evaluate.evaluate(workdir, ["is", "bleu"])
  with pytest.raises(ValueError, match="at least 10"):
    evaluate.evaluate(workdir, ["fid"], num_images=5)
  with pytest.raises(FileNotFoundError, match="no such workdir"):
    evaluate.evaluate(workdir + "-absent", ["fid"])


def test_rprecision_with_given_damsm_encoders_names_them(workdir, tmp_path, capsys):
  damsm = os.path.join(workdir, "checkpoints", "damsm")
  report = evaluate.evaluate(workdir, ["rprecision"], num_images=20, damsm_weights=damsm)
  r = report["metrics"]["rprecision"]
  assert r["encoders"].startswith(damsm + os.sep)
  own = evaluate.evaluate(workdir, ["rprecision"], num_images=20)["metrics"]["rprecision"]
  assert own == r  # the run's own encoders are these
  assert f"DAMSM encoders {r['encoders']})" in evaluate.format_table(report)
  assert evaluate.main(["--workdir", workdir, "--metrics", "rprecision", "--num-images", "20",
                        "--damsm-weights", str(tmp_path)]) == 2
  assert "not a workdir with checkpoints/damsm" in capsys.readouterr().err


def test_fid_ranks_checkpoints_during_training(workdir, tmp_path, caplog):
  """The gan phase alone, its pretrained encoders taken from `workdir`, with
  FID (random Inception, 16 images) as the checkpoint metric, said to be
  UNCALIBRATED in the log."""
  c = tiny.get_config()
  c.train.phases = "gan"
  c.damsm.weights = c.stream.weights = workdir
  c.eval.train_metric = "fid"
  wd = str(tmp_path / "fid")
  with caplog.at_level("WARNING"):
    trainer.run(c, wd)
  assert "the FID ranking checkpoints is UNCALIBRATED" in caplog.text
  assert len([r for r in caplog.records if r.getMessage().startswith("checkpoint FID")
              and inception_net.UNCALIBRATED in r.getMessage()]) == 2
  metas = [json.load(open(os.path.join(wd, "checkpoints", "gan", str(s), "meta", "metadata")))
           for s in (1, 2)]
  assert all(np.isfinite(m["metric"]) and m["metric"] > 0 for m in metas)
  assert any(n.startswith("fid_stats_shapes_test_16_32px_75_random")
             for n in os.listdir(os.path.join(wd, "eval")))


def test_shape_reading_reports_both_readers_on_both_splits(workdir, model):
  from mirrorgan_jax.metrics import shape_reading  # pylint: disable=import-outside-toplevel
  lines = shape_reading.report(workdir, captions=10).splitlines()
  assert "gan step" in lines[0]
  for split in shape_reading.SPLITS:
    mine = [l for l in lines if l.startswith(f"{split}:")]
    assert sum("STREAM reads" in l for l in mine) == 2  # real and generated
    for what in ("real", "generated"):
      assert any(f"scorer reads {what}" in l for l in mine)
      assert sum(l.startswith(f"{split}: edges of {what} squares: drift") for l in mine) == 1
  # The real lines are the scorer on the split's own images at the last stage size.
  config = model.config
  sizes = stage_sizes(config)
  source = sources.make_source(config, "test", sizes[-1], sizes)
  caps = evaluate.first_captions(source, 10, config.text.words_num)
  counts, _ = shape_reading.scorer_reading(
      [source.example(int(i)).stages[-1] for i in caps.images], caps.texts)
  for kind, count in counts.items():
    assert any(l.startswith(f"test: the scorer reads real {kind} objects right "
                            f"{shape_reading._rates(count)};") for l in lines)
    for l in (l for l in mine if " reads " in l):  # "... right 0.400: circle 0.50 (n=4), ..."
      rate = float(l.split(" right ")[1].split(":")[0])
      assert 0.0 <= rate <= 1.0
