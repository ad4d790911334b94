"""CUB-200 birds: the official MirrorGAN values (cfg/train_bird.yml and the
AttnGAN DAMSM bird.yml). Override any field with --config.<field>=<value>."""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.dataset = "birds"
  config.seed = 0
  config.batch_size = 12  # train_bird.yml
  # 'float32', or 'bfloat16' for bf16 compute with f32 parameters, optimizer
  # state and losses (not in the official code).
  config.dtype = "float32"

  # STEM (DAMSM text encoder).
  config.text = ml_collections.ConfigDict()
  config.text.vocab_size = 5450  # CUB captions.pickle; released encoders use it
  config.text.words_num = 18  # WORDS_NUM during training
  config.text.embedding_dim = 300
  config.text.hidden_dim = 256  # nef: 128 per direction
  config.text.dropout = 0.5

  # GLAM generator and the discriminators.
  config.model = ml_collections.ConfigDict()
  config.model.ngf = 32  # GF_DIM in train_bird.yml
  config.model.ndf = 64  # DF_DIM
  config.model.r_num = 2  # residual blocks per refinement stage
  config.model.z_dim = 100
  config.model.condition_dim = 100
  config.model.num_stages = 3  # TREE.BRANCH_NUM: 64, 128, 256 px
  config.model.base_size = 64  # TREE.BASE_SIZE

  # STREAM captioner.
  config.stream = ml_collections.ConfigDict()
  config.stream.backbone = "resnet152"  # frozen ImageNet ResNet-152, or "small"
  # Resized to 224; deviation: inputs are ImageNet-normalised (the official code
  # feeds [-1, 1]), matching how STREAM is pretrained (see models/captioner.py).
  config.stream.image_size = 224
  config.stream.embed_size = 256  # CAP.embed_size
  config.stream.hidden_size = 512  # 2 * CAP.hidden_size
  config.stream.small_widths = (32, 64, 128, 256)  # only for backbone "small"
  config.stream.max_decode_len = 20

  # DAMSM image encoder (pretraining and R-precision).
  config.image_encoder = ml_collections.ConfigDict()
  config.image_encoder.backbone = "inception_v3"  # or "small"
  config.image_encoder.image_size = 299
  config.image_encoder.small_widths = (32, 64, 128, 256)

  # Adam for G and for each D (TRAIN.GENERATOR_LR / DISCRIMINATOR_LR).
  config.optim = ml_collections.ConfigDict()
  config.optim.g_lr = 2e-4
  config.optim.d_lr = 2e-4
  config.optim.b1 = 0.5
  config.optim.b2 = 0.999

  config.loss = ml_collections.ConfigDict()
  config.loss.stream_weight = 10.0  # TRAIN.SMOOTH.LAMBDA1 in train_bird.yml
  config.loss.kl_weight = 1.0

  config.ema_decay = 0.999  # of G's parameters, after every G step

  # Input pipeline (mirrorgan_jax/data/pipeline.py).
  config.data = ml_collections.ConfigDict()
  config.data.data_dir = "~/tensorflow_datasets"  # where the TFDS dataset is written
  # Your folder in the AttnGAN layout (README, "Real datasets"); when set, the
  # TFDS dataset is prepared from it on first use.
  config.data.manual_dir = ""
  config.data.check_images = True  # decode every image while validating the folder
  config.data.workers = 4  # WORKERS in train_bird.yml; 0 = in the main process
  config.data.prefetch = 2  # batches prepared ahead (per worker)
  return config
