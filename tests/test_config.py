import pytest

from configs import birds, coco, shapes, tiny
from mirrorgan_jax import factory, trained
from mirrorgan_jax.config_check import ConfigError, check_config, stage_sizes


def test_birds_has_the_official_values():
  c = birds.get_config()
  assert (c.model.ngf, c.model.ndf, c.model.r_num) == (32, 64, 2)
  assert stage_sizes(c) == (64, 128, 256)
  assert c.batch_size == 12
  assert (c.optim.g_lr, c.optim.d_lr, c.optim.b1, c.optim.b2) == (2e-4, 2e-4, 0.5, 0.999)
  assert (c.loss.stream_weight, c.loss.kl_weight, c.ema_decay) == (10.0, 1.0, 0.999)
  assert (c.text.words_num, c.model.z_dim, c.model.condition_dim) == (18, 100, 100)
  assert (c.text.hidden_dim, c.text.embedding_dim, c.text.vocab_size) == (256, 300, 5450)
  assert c.stream.backbone == "resnet152"
  assert c.model.image_subpixels == 1 and not c.model.ca_normalize_input
  assert not c.model.masked_image_head
  assert c.gan.ema_bn_batches == 0  # sampling with the live G's BatchNorm statistics
  assert (c.gan.sample_z_scale, c.gan.sample_ca_noise) == (1.0, 1.0)  # the full noise
  assert not c.train.concurrent_pretraining  # one phase after another


def test_coco_has_attngan_coco_values():
  c = coco.get_config()
  assert (c.model.ngf, c.model.ndf, c.model.r_num) == (48, 96, 3)
  assert (c.batch_size, c.text.words_num, c.text.vocab_size) == (14, 12, 27297)


@pytest.mark.parametrize("get", [birds.get_config, coco.get_config, tiny.get_config])
def test_shipped_configs_are_valid(get):
  check_config(get())


@pytest.mark.parametrize("path,value,fragment", [
    ("model.base_size", 48, "config.model.base_size must be a power of two"),
    ("model.ngf", 0, "config.model.ngf must be a positive integer"),
    ("batch_size", -3, "config.batch_size"),
    ("dtype", "float16", "config.dtype must be one of"),
    ("text.hidden_dim", 255, "config.text.hidden_dim"),
    ("text.dropout", 1.0, "config.text.dropout"),
    ("text.sentence_code", "mean", "config.text.sentence_code must be one of"),
    ("optim.b1", 1.5, "config.optim.b1"),
    ("loss.stream_weight", -1.0, "config.loss.stream_weight"),
    ("stream.backbone", "vgg", "config.stream.backbone"),
    ("ema_decay", 2.0, "config.ema_decay"),
    ("damsm.near_misses", True, "dataset 'shapes'"),
    ("damsm.function_word_drop", 0.2, "above 0 only with dataset 'shapes'"),
    ("data.prefetch", -1, "config.data.prefetch must be an integer >= 0"),
    ("model.image_subpixels", 0, "config.model.image_subpixels must be a positive integer"),
    ("gan.ema_bn_batches", -1, "config.gan.ema_bn_batches must be an integer >= 0"),
    ("gan.sample_ca_noise", -0.5, "config.gan.sample_ca_noise must be a number >= 0"),
    ("loss.edge_d_weight", -0.3, "config.loss.edge_d_weight must be a number >= 0"),
    ("loss.edge_d_gain", 0.0, "config.loss.edge_d_gain must be a positive number"),
    ("loss.colour_twin_weight", 1.0, "with dataset 'shapes' and model.masked_image_head"),
    ("loss.colour_twin_weight", -1.0, "config.loss.colour_twin_weight must be 0, or"),
])
def test_out_of_range_values_are_refused_with_the_field_name(path, value, fragment):
  c = birds.get_config()
  section, _, field = path.rpartition(".")
  (c[section] if section else c)[field] = value
  with pytest.raises(ConfigError) as e:
    factory.create_models(c)
  assert fragment in str(e.value)
  assert repr(value) in str(e.value)


def test_stage_count_and_image_size_are_bounded():
  from configs import shapes  # pylint: disable=import-outside-toplevel
  c = shapes.get_config()
  c.model.num_stages = 9  # 16 px * 2**8: 4096 px
  with pytest.raises(ConfigError, match=r"config.model.num_stages must be at most 6 with "
                                        r"model.base_size=16 \(the last stage would be 4096 px; "
                                        r"the limit is 512"):
    check_config(c)
  c.model.num_stages = 6  # 512 px: allowed
  check_config(c)
  c = birds.get_config()
  c.model.base_size = 1024
  with pytest.raises(ConfigError, match="a power of two from 8 to 512"):
    check_config(c)


def test_near_miss_batches_must_be_even():
  from configs import shapes  # pylint: disable=import-outside-toplevel
  c = shapes.get_config()
  assert c.damsm.near_misses
  c.damsm.batch_size = 47
  with pytest.raises(ConfigError, match=r"config.damsm.batch_size must be even with "
                                        r"damsm.near_misses"):
    check_config(c)


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_function_word_rates_are_rates(value):
  from configs import shapes  # pylint: disable=import-outside-toplevel
  c = shapes.get_config()
  c.damsm.function_word_insert = value
  with pytest.raises(ConfigError, match=r"config.damsm.function_word_insert must be a rate"):
    check_config(c)


def test_colour_twins_need_a_batch_of_whole_groups():
  from configs import shapes  # pylint: disable=import-outside-toplevel
  c = shapes.get_config()
  c.loss.colour_twin_weight = 10.0
  c.gan.twin_every = 4
  check_config(c)  # batch 32
  c.gan.twin_every = 3
  with pytest.raises(ConfigError, match=r"config.batch_size must be a multiple of "
                                        r"gan.twin_every=3 with loss.colour_twin_weight"):
    check_config(c)
  c.gan.twin_every = 1
  with pytest.raises(ConfigError, match=r"config.gan.twin_every must be an integer >= 2"):
    check_config(c)
  del c.gan["twin_every"]  # a config saved before the field: pairs
  check_config(c)


def test_old_checkpoints_configs_get_the_official_values_of_later_fields():
  saved = shapes.get_config().to_dict()
  del saved["model"]["image_subpixels"]  # written before the field existed
  assert trained.config_from_meta({"config": saved}).model.image_subpixels == 1
  saved["model"]["image_subpixels"] = 2
  assert trained.config_from_meta({"config": saved}).model.image_subpixels == 2
  del saved["model"]["masked_image_head"]
  assert trained.config_from_meta({"config": saved}).model.masked_image_head is False
  del saved["gan"]["ema_bn_batches"]
  assert trained.config_from_meta({"config": saved}).gan.ema_bn_batches == 0
  del saved["gan"]["sample_z_scale"], saved["gan"]["sample_ca_noise"]
  old = trained.config_from_meta({"config": saved})
  assert (old.gan.sample_z_scale, old.gan.sample_ca_noise) == (1.0, 1.0)
  del saved["text"]["sentence_code"]
  assert trained.config_from_meta({"config": saved}).text.sentence_code == "states"
