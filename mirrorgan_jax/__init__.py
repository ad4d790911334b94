"""MirrorGAN in JAX/Flax: text-to-image generation by re-description."""

__version__ = "0.1.0"
