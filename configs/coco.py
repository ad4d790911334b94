"""COCO-2014. MirrorGAN released no COCO config: these are AttnGAN's COCO
values (cfg/coco_attn2.yml), the natural default (reference section 16)."""

from configs import birds


def get_config():
  config = birds.get_config()
  config.dataset = "coco"
  config.batch_size = 14
  config.text.vocab_size = 27297
  config.text.words_num = 12
  config.model.ngf = 48
  config.model.ndf = 96
  config.model.r_num = 3
  return config
