"""Flax Linen modules of MirrorGAN: one file per module family (NHWC throughout)."""
