"""Converted PyTorch files as the programs use them: a workdir made from
AttnGAN's DAMSM files and a MirrorGAN netG samples and exports back to the same
tensors; ImageNet backbone files fill the pretraining states; a birds run
without them is refused before any work."""

import logging
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from mirrorgan_jax import convert as cv
from mirrorgan_jax import factory, pretrain_steps, trainer
from mirrorgan_jax.config_check import ConfigError
from mirrorgan_jax.convert import backbones, commands, core, torch_pickle, workdirs
from mirrorgan_jax.data.vocab import CaptionsPickle, Vocabulary, save_captions_pickle
from mirrorgan_jax.generate import TextToImage
from tests.test_convert import FIXTURES, small_config
from tests.test_torch_parity import Fixture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ("<end>",) + tuple(f"w{i}" for i in range(1, 40))  # the fixtures' 40 rows


def captions_pickle(path, words=WORDS):
  save_captions_pickle(path, CaptionsPickle([[1, 2, 3]], [[4, 5]], Vocabulary(words)))
  return str(path)


def fixture_file(name):
  return os.path.join(FIXTURES, name)


def gan_config():
  """The fixtures' sizes with the small captioner: a converted G without STREAM
  carries a placeholder captioner, and ResNet-152's would be 240 MB of zeros
  to write and read in every test."""
  c = small_config()
  c.stream.backbone = "small"
  return c


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  """A workdir from the fixtures' PyTorch files, as a user makes it: the DAMSM
  encoders with their captions.pickle, then G, then the Ds."""
  tmp = tmp_path_factory.mktemp("convert")
  fx = Fixture(FIXTURES, str(tmp))
  out = str(tmp / "W")
  written = commands.convert(
      "damsm", [fixture_file("text_encoder.pth"), fx.file("image_encoder")], small_config(),
      out, vocab=captions_pickle(tmp / "captions.pickle"))
  assert written[0].startswith(f"{out}/checkpoints/damsm/")
  commands.convert("generator", [fixture_file("netG.pth")], gan_config(), out, step=7)
  commands.convert("discriminators", [fixture_file(f"netD{i}.pth") for i in range(3)],
                   gan_config(), out)
  return fx, out, tmp


def same_tensors(got: dict, want: dict, lstm_biases=()):
  """Equal state dicts; num_batches_tracked is written as 0; LSTM biases
  come back as their sum (in bias_ih, bias_hh zero)."""
  assert set(got) == set(want)
  for k in want:
    if k.endswith("num_batches_tracked"):
      continue
    if any(k.startswith(p) and "bias_" in k for p in lstm_biases):
      continue
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)
  for p in lstm_biases:
    for suffix in ("", "_reverse"):
      if f"{p}.bias_ih_l0{suffix}" in want:
        np.testing.assert_allclose(
            got[f"{p}.bias_ih_l0{suffix}"] + got[f"{p}.bias_hh_l0{suffix}"],
            want[f"{p}.bias_ih_l0{suffix}"] + want[f"{p}.bias_hh_l0{suffix}"], atol=1e-7)


def test_the_converted_workdir_samples_with_the_files_generator(converted):
  fx, out, _ = converted
  t2i = TextToImage(out, devices=jax.devices()[:1], batch_size=2)
  assert t2i.step == 7 and t2i.vocab.words == WORDS
  v, _, path = workdirs.read_variables(out, "generator")
  want = core.flatten(cv.from_torch("generator", fixture_file("netG.pth"), fx.config))
  got = core.flatten(v)
  assert set(got) == set(want)
  for k in want:
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)
  images = t2i.generate(["w1 w2 w3", "w4 w5"])
  assert [im.shape[2] for im in images.images] == [64, 128, 256]
  assert all(im.std() > 0 for im in images.images)
  assert path.endswith("checkpoints/gan/7")


def test_export_gives_back_the_files(converted):
  fx, out, tmp = converted
  from mirrorgan_jax import export  # pylint: disable=import-outside-toplevel
  assert export.main(["generator", "--workdir", out, "--out", str(tmp / "exp" / "netG.pth")]) == 0
  same_tensors(torch_pickle.state_dict(tmp / "exp" / "netG.pth"),
               torch_pickle.state_dict(fixture_file("netG.pth")))
  assert export.main(["damsm", "--workdir", str(tmp / "absent"), "--out", str(tmp)]) == 2
  written = export.export("discriminators", out, str(tmp / "exp" / "d"))
  assert [os.path.basename(p) for p in written] == ["netD0.pth", "netD1.pth", "netD2.pth"]
  for i, p in enumerate(written):
    same_tensors(torch_pickle.state_dict(p), torch_pickle.state_dict(fixture_file(f"netD{i}.pth")))
  text, image = export.export("damsm", out, str(tmp / "exp" / "damsm"))
  same_tensors(torch_pickle.state_dict(text), torch_pickle.state_dict(
      fixture_file("text_encoder.pth")), lstm_biases=("rnn",))
  same_tensors(torch_pickle.state_dict(image), torch_pickle.state_dict(fx.file("image_encoder")))


def test_stream_converts_and_exports(converted):
  fx, _, tmp = converted
  out = str(tmp / "S")
  files = [fx.file("caption_cnn"), fixture_file("caption_rnn.pth")]
  commands.convert("stream", files, small_config(), out)
  variables, config, _ = workdirs.read_variables(out, "captioner")  # what export writes
  cnn, rnn = cv.to_torch("captioner", variables, config)  # (240 MB: not written again here)
  same_tensors(cnn, torch_pickle.state_dict(files[0]))
  same_tensors(rnn, torch_pickle.state_dict(files[1]), lstm_biases=("lstm",))
  with pytest.raises(FileExistsError, match="already holds stream checkpoints"):
    commands.convert("stream", files, small_config(), out)


def test_bad_input_is_refused_with_names_and_nothing_written(tmp_path):
  out = str(tmp_path / "W")
  args = [fixture_file("text_encoder.pth"), fixture_file("netD0.pth")]  # checked first: the vocabulary
  with pytest.raises(ValueError, match=r"the vocabulary has 41 words but .*text_encoder.pth "
                                       r"\(encoder.weight\) has 40 embedding rows"):
    commands.convert("damsm", args, small_config(), out,
                     vocab=captions_pickle(tmp_path / "c.pickle", WORDS + ("w40",)))
  with pytest.raises(ValueError, match="damsm needs --vocab"):
    commands.convert("damsm", args, small_config(), out)
  mean_form = small_config()
  mean_form.text.sentence_code = "states_mean"  # RNN_ENCODER has only the states
  for kind, files in (("damsm", args), ("generator", [fixture_file("netG.pth")])):
    with pytest.raises(cv.ConversionError, match=r"the config has text.sentence_code="
                       r"'states_mean'.*convert with --config.text.sentence_code=states"):
      commands.convert(kind, files, mean_form, out,
                       vocab=captions_pickle(tmp_path / "c.pickle"))
  with pytest.raises(FileNotFoundError, match="no damsm phase to take the text encoder from"):
    commands.convert("generator", [fixture_file("netG.pth")], small_config(), out)
  with pytest.raises(ValueError, match="generator takes 1 file"):
    commands.convert("generator", args, small_config(), out)
  assert not os.path.exists(out)
  r = subprocess.run([sys.executable, "-m", "mirrorgan_jax.convert", "stream",
                      fixture_file("netG.pth"), fixture_file("caption_rnn.pth"),
                      "--out", out], cwd=ROOT, capture_output=True, text=True, timeout=600,
                     env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert r.returncode == 2 and "Traceback" not in r.stderr
  assert "CAPTION_CNN + CAPTION_RNN does not fit the file(s)" in r.stderr
  assert "tensors with no place" in r.stderr and "netG.pth: h_net1." in r.stderr
  assert not os.path.exists(out)


def test_backbone_files_fill_the_pretraining_state(tmp_path):
  """ResNet-152 from a torchvision-layout file, put where STREAM's frozen
  encoder lives; Inception-v3 as .pth and as our .npz, under DAMSM's projections."""
  fx = Fixture(FIXTURES, str(tmp_path))
  c = small_config()
  mesh = trainer.parallel.make_mesh(jax.devices()[:1])
  models = factory.create_models(c)
  for phase, kind, field, init in (
      ("stream", "resnet152", "resnet_weights", pretrain_steps.init_stream_state),
      ("damsm", "inception", "inception_weights", pretrain_steps.init_damsm_state)):
    pth = fx.file(kind)
    npz = str(tmp_path / f"{kind}.npz")
    if kind == "inception":
      assert commands.convert(kind, [pth], c, npz) == [npz]
    want = core.flatten(cv.from_torch(kind, pth))
    for path in (pth, npz) if kind == "inception" else (pth,):
      getattr(c, "stream" if phase == "stream" else "image_encoder")[field] = path
      shapes = jax.eval_shape(lambda k, init=init: init(models, c, k), jax.random.key(0))
      fresh = lambda k, shapes=shapes: jax.tree.map(  # noqa: E731
          lambda s: jax.numpy.zeros(s.shape, s.dtype), shapes)
      program = backbones.jit_init(fresh, phase, mesh, with_weights=True)
      state = backbones.with_weights(program, backbones.weights_file(c, phase), mesh)(
          jax.random.key(0))
      net = state.net if phase == "stream" else state.image
      sub = (lambda t: t["encoder"]["resnet"]) if phase == "stream" else (
          lambda t: t["inception"])
      got = core.flatten({"params": sub(net.params), "batch_stats": sub(net.batch_stats)})
      assert set(got) == set(want)
      for k in want:
        np.testing.assert_array_equal(np.asarray(got[k]), want[k], err_msg=f"{path} {k}")
  with pytest.raises(cv.ConversionError, match=r"holds inception, resnet152 expected"):
    backbones.load("resnet152", str(tmp_path / "inception.npz"))


def test_real_data_runs_need_the_imagenet_weights(tmp_path, caplog):
  c = small_config()
  workdir = str(tmp_path / "run")
  c.train.phases = "damsm,stream,gan"
  with pytest.raises(ConfigError, match=r"config.image_encoder.inception_weights is empty: the "
                                        r"damsm phase would train on a random inception"):
    trainer.run(c, workdir)
  c.damsm.weights = str(tmp_path)  # damsm skipped: the stream phase is next
  with pytest.raises(ConfigError, match=r"config.stream.resnet_weights is empty.*resnet152-"):
    trainer.run(c, workdir)
  c.stream.resnet_weights = str(tmp_path / "missing.pth")
  with pytest.raises(ConfigError, match=r"missing.pth': no such file"):
    trainer.run(c, workdir)
  assert not os.path.exists(workdir)  # refused before any work
  r = subprocess.run([sys.executable, "train.py", "--config", "configs/birds.py", "--workdir",
                      workdir, "--config.train.phases=damsm,stream,gan"], cwd=ROOT,
                     capture_output=True, text=True, timeout=600,
                     env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
  assert r.stderr.startswith("error: config.image_encoder.inception_weights is empty")
  assert not os.path.exists(workdir)
  c.stream.resnet_weights = ""
  c.train.allow_random_backbones = True
  with caplog.at_level(logging.WARNING):
    backbones.check(c, ["damsm", "stream"])
  assert "stream phase: RANDOM resnet152 weights" in caplog.text
  assert "damsm phase: RANDOM inception weights" in caplog.text


def test_discriminators_of_another_size_are_refused(converted):
  _, out, _ = converted
  c = gan_config()
  c.model.ndf = 8  # the workdir's were converted at 4
  from tests.test_convert import random_variables  # pylint: disable=import-outside-toplevel
  d_vars = random_variables("discriminators", c)
  with pytest.raises(ValueError, match="netD0: its shapes differ from the discriminators of"):
    workdirs.write_discriminators(out, c, d_vars, ["netD0.pth"])


def test_a_generator_converted_for_a_config_with_the_edge_critic_keeps_one(tmp_path):
  """`loss.edge_d_weight` (shapes): the gan checkpoint written around a
  converted G holds a fresh edge critic of the config's shapes, which restores
  under that config and stays when the official Ds are converted in."""
  from mirrorgan_jax import trained  # pylint: disable=import-outside-toplevel
  fx = Fixture(FIXTURES, str(tmp_path))
  out = str(tmp_path / "W")
  commands.convert("damsm", [fixture_file("text_encoder.pth"), fx.file("image_encoder")],
                   small_config(), out, vocab=captions_pickle(tmp_path / "captions.pickle"))
  c = gan_config()
  c.loss.edge_d_weight = 0.3
  commands.convert("generator", [fixture_file("netG.pth")], c, out, step=3)
  edge = trained.restore(out, "gan").state.edge_d
  want = factory.create_models(c).edge_discriminator.image_size
  assert want == 256 and edge.params["trunk"]["down0"]["kernel"].shape[2] == 5
  commands.convert("discriminators", [fixture_file(f"netD{i}.pth") for i in range(3)], c, out)
  again = trained.restore(out, "gan").state
  jax.tree.map(np.testing.assert_array_equal, again.edge_d.params, edge.params)
  assert len(again.d) == 3
