"""A tiny configuration for tests: the shapes dataset at two stages (16 and
32 px), narrow networks and a small from-scratch STREAM encoder. Every field
the real configs have."""

from configs import shapes


def get_config():
  config = shapes.get_config()
  config.batch_size = 8
  # The official values where the shapes default deviates.
  config.ema_decay = 0.999
  config.optim.g_lr = 2e-4
  config.optim.d_lr = 2e-4
  config.loss.edge_d_weight = 0.0  # the edge critic: tests/test_gan_step.py turns it on
  # DAMSM on the captions as given: tests/test_caption_noise.py turns the noise on.
  config.damsm.function_word_swap = 0.0
  config.damsm.function_word_drop = 0.0
  config.damsm.function_word_insert = 0.0
  config.text.words_num = 6
  config.text.embedding_dim = 16
  config.text.hidden_dim = 16
  config.model.ngf = 8
  config.model.ndf = 8
  config.model.r_num = 1
  config.model.z_dim = 8
  config.model.condition_dim = 8
  config.model.num_stages = 2
  config.model.base_size = 16
  config.stream.backbone = "small"
  config.stream.embed_size = 16
  config.stream.hidden_size = 16
  config.stream.small_widths = (8, 16)
  config.image_encoder.backbone = "small"
  config.image_encoder.small_widths = (8, 16)
  config.damsm.batch_size = 8
  config.damsm.steps_per_epoch = 2
  config.damsm.num_steps = 2
  config.stream.batch_size = 8
  config.stream.num_steps = 2
  config.gan.num_steps = 2
  config.gan.ema_bn_batches = 2  # the shapes deviation, on few batches
  config.train.log_every = 1
  config.train.checkpoint_every = 1
  config.train.sample_every = 2
  config.train.eval_batches = 1
  # One phase after another, as birds: tests/test_train.py runs them at once.
  config.train.concurrent_pretraining = False
  config.eval.inception_image_size = 75  # Inception's smallest input: fast tests
  config.eval.train_fid_images = 16
  config.data.shapes.train_size = 64
  config.data.shapes.test_size = 16
  config.data.shapes.test_heldout_size = 16
  return config
