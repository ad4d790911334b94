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
  # The sentence feature: "states", AttnGAN's last LSTM states (official);
  # "states_mean" (a deviation, shapes only) their mean with the words' mean.
  config.text.sentence_code = "states"

  # GLAM generator and the discriminators.
  config.model = ml_collections.ConfigDict()
  config.model.ngf = 32  # GF_DIM in train_bird.yml
  config.model.ndf = 64  # DF_DIM
  config.model.r_num = 2  # residual blocks per refinement stage
  config.model.z_dim = 100
  config.model.condition_dim = 100
  config.model.num_stages = 3  # TREE.BRANCH_NUM: 64, 128, 256 px
  config.model.base_size = 64  # TREE.BASE_SIZE
  # Official: the sentence code enters conditioning augmentation as it is.
  config.model.ca_normalize_input = False
  # Official: each image head's conv gives one tanh value per pixel and channel.
  config.model.image_subpixels = 1
  # Official: that value is the pixel (no coverage mask over a background).
  config.model.masked_image_head = False

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
  # STREAM pretraining (the image-captioning code the MirrorGAN README names).
  config.stream.batch_size = 128
  config.stream.lr = 1e-3
  config.stream.b1 = 0.9
  config.stream.b2 = 0.999
  config.stream.num_steps = 6_900  # 100 epochs of 69 steps (not released; see README)
  config.stream.weights = ""  # a workdir or checkpoint holding pretrained STREAM: skip the phase
  # The frozen ImageNet ResNet-152 (backbone "resnet152"): torchvision's
  # resnet152-*.pth as downloaded, or our .npz (python -m mirrorgan_jax.convert
  # resnet152). Required to run the stream phase (README, "PyTorch weights").
  config.stream.resnet_weights = ""

  # DAMSM image encoder (pretraining and R-precision).
  config.image_encoder = ml_collections.ConfigDict()
  config.image_encoder.backbone = "inception_v3"  # or "small"
  config.image_encoder.image_size = 299
  config.image_encoder.small_widths = (32, 64, 128, 256)
  # The frozen ImageNet Inception-v3 (backbone "inception_v3"): torchvision's
  # inception_v3_google-*.pth, AttnGAN's image_encoder200.pth, or our .npz
  # (python -m mirrorgan_jax.convert inception). Required to run the damsm phase.
  config.image_encoder.inception_weights = ""

  # DAMSM pretraining of STEM and the image encoder (AttnGAN cfg/DAMSM/bird.yml).
  config.damsm = ml_collections.ConfigDict()
  config.damsm.batch_size = 48
  config.damsm.lr = 0.002  # ENCODER_LR
  config.damsm.lr_decay = 0.98  # per epoch ...
  config.damsm.min_lr_fraction = 0.1  # ... while lr > ENCODER_LR / 10
  config.damsm.steps_per_epoch = 184  # 8855 // 48
  config.damsm.num_steps = 36_800  # 200 epochs: the released text_encoder200.pth
  config.damsm.grad_clip = 0.25  # RNN_GRAD_CLIP, text encoder only
  config.damsm.gamma1 = 4.0
  config.damsm.gamma2 = 5.0
  config.damsm.gamma3 = 10.0
  # Deviation when True (shapes only): each DAMSM batch pairs every image with a
  # near miss, the same scene with one named thing changed (docs/shapes_default_job.md).
  config.damsm.near_misses = False
  # A deviation where > 0 (shapes only): DAMSM's captions' function words swapped,
  # dropped, inserted at these rates per word (mirrorgan_jax/caption_noise.py).
  config.damsm.function_word_swap = 0.0
  config.damsm.function_word_drop = 0.0
  config.damsm.function_word_insert = 0.0
  config.damsm.weights = ""  # a workdir or checkpoint holding pretrained DAMSM: skip the phase

  # Adam for G and for each D (TRAIN.GENERATOR_LR / DISCRIMINATOR_LR).
  config.optim = ml_collections.ConfigDict()
  config.optim.g_lr = 2e-4
  config.optim.d_lr = 2e-4
  config.optim.b1 = 0.5
  config.optim.b2 = 0.999

  config.loss = ml_collections.ConfigDict()
  config.loss.stream_weight = 10.0  # TRAIN.SMOOTH.LAMBDA1 in train_bird.yml
  config.loss.kl_weight = 1.0
  # Deviation when > 0 (shapes only): real images blurred a share in
  # [negative_min_share, 1] of the way, a further fake for each D at this
  # weight (negative data augmentation; mirrorgan_jax/negatives.py).
  config.loss.negative_weight = 0.0
  config.loss.negative_min_share = 0.3
  # TRAIN.SMOOTH.LAMBDA: 0 in MirrorGAN, whose G loss has no DAMSM term. When
  # > 0 (a deviation, shapes only), AttnGAN's: the frozen DAMSM encoders'
  # word and sentence matching losses of the last stage's fakes against their
  # captions join G's loss at this weight (AttnGAN: 5 CUB, 50 COCO).
  config.loss.damsm_weight = 0.0
  # Deviation when > 0 (shapes only): a further D at the last scale, the edge
  # critic, reads each image with the differences of its largest channel
  # between neighbouring pixels times `edge_d_gain` as two more channels, and
  # its adversarial term joins G's loss at this weight
  # (mirrorgan_jax/models/discriminator.py, `edge_channels`).
  config.loss.edge_d_weight = 0.0
  config.loss.edge_d_gain = 30.0
  # Deviation when > 0 (shapes only): colour twins. The last row of every
  # `gan.twin_every` of a GAN batch is the row before it in other colours (no
  # held-out pair), drawn from the same noise, and the squared difference of
  # the two rows' image-head coverages joins G's loss at this weight
  # (losses.colour_twin_loss).
  config.loss.colour_twin_weight = 0.0

  config.ema_decay = 0.999  # of G's parameters, after every G step

  # The GAN phase.
  config.gan = ml_collections.ConfigDict()
  config.gan.num_steps = 479_050  # MAX_EPOCH 650 x 737 iterations (batch 12, drop_last)
  # () trains every stage from step 0 (official). A growth schedule such as
  # ((0, 1), (20000, 2), (40000, 3)) starts with the first stage and adds one
  # generator stage and its discriminator at each listed step.
  config.gan.stages = ()
  # Official, 0: the EMA generator samples with the live generator's BatchNorm
  # running statistics. Deviation when N > 0 (shapes only): with statistics of
  # the EMA parameters themselves, the mean of N batches' of training captions
  # (as SWA's update_bn), recomputed before each checkpoint, sample grid and
  # report (mirrorgan_jax/sampling.py).
  config.gan.ema_bn_batches = 0
  # Official, 1 and 1: the sampler (the sample grids, the report, generate,
  # evaluate) draws z ~ N(0, I) and conditioning augmentation's c = mu + sigma
  # eps as in training. Deviation when below 1 (shapes only): z and eps scaled
  # by these (0: the mean code mu), less variety for closer drawing of the
  # caption; training never reads them (mirrorgan_jax/sampling.py).
  config.gan.sample_z_scale = 1.0
  config.gan.sample_ca_noise = 1.0
  # With loss.colour_twin_weight > 0: the last row of every `twin_every` of a
  # batch is a colour twin (2: half of the rows).
  config.gan.twin_every = 2

  # The training program (train.py).
  config.train = ml_collections.ConfigDict()
  config.train.phases = "damsm,stream,gan"  # any subset, in this order
  config.train.log_every = 100  # steps between logged metrics
  config.train.checkpoint_every = 5_000  # steps (official: every 50 epochs)
  config.train.eval_batches = 10  # test batches scored at each checkpoint to pick the best
  config.train.sample_every = 5_000  # steps between sample grids with attention maps
  config.train.keep_latest = 2  # newest checkpoints kept, besides the best one
  config.train.nan_policy = "stop"  # or "skip": drop the update of a non-finite step
  # True trains the damsm and stream phases at once, a thread each (the same
  # results; on a CPU faster, as neither step fills the cores; one host only).
  # Off: the official order, and on one accelerator both pretraining models
  # (Inception-v3, ResNet-152) would share its memory.
  config.train.concurrent_pretraining = False
  # True lets the damsm / stream phases run on random ImageNet backbones when
  # their weights fields are empty (benchmarks, tests); the log says so.
  config.train.allow_random_backbones = False
  config.train.distributed = "auto"  # "auto": jax.distributed when the environment says so; "yes"; "no"
  # Compiled programs kept on disk, so that a resumed or repeated run skips
  # XLA (birds: minutes of compiling): a folder in the workdir, or an absolute
  # path; "" keeps none. JAX_COMPILATION_CACHE_DIR, when set, wins.
  config.train.compilation_cache = "xla_cache"

  # Input pipeline (mirrorgan_jax/data/pipeline.py).
  config.data = ml_collections.ConfigDict()
  config.data.data_dir = "~/tensorflow_datasets"  # where the TFDS dataset is written
  # Your folder in the AttnGAN layout (README, "Real datasets"); when set, the
  # TFDS dataset is prepared from it on first use.
  config.data.manual_dir = ""
  config.data.check_images = True  # decode every image while validating the folder
  config.data.workers = 4  # WORKERS in train_bird.yml; 0 = in the main process
  config.data.prefetch = 2  # batches read ahead by as many threads (per worker); 0: none

  # Evaluation (mirrorgan_jax/evaluate.py; the official code ships none).
  config.eval = ml_collections.ConfigDict()
  # Our .npz of pytorch-fid's Inception (python -m mirrorgan_jax.convert fid_inception);
  # empty: random weights, and every IS/FID figure says UNCALIBRATED.
  config.eval.inception_weights = ""
  config.eval.inception_image_size = 299  # pytorch-fid resizes to 299
  config.eval.fid_stats = ""  # real test statistics (.npz, mu/sigma); empty: computed, cached
  # What ranks checkpoints as "best" during gan training: "auto" is the shapes
  # alignment scorer for shapes and FID for photographs; or alignment, fid, none.
  config.eval.train_metric = "auto"
  config.eval.train_fid_images = 2_048  # the FID subset during training (not the 30k protocol)
  return config
