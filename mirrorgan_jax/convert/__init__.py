"""PyTorch weights in and out, without PyTorch.

    python -m mirrorgan_jax.convert KIND FILE... --config CONFIG --out PATH

`from_torch(kind, files, config)` gives the Flax variables of a network from
official PyTorch state dicts; `to_torch(kind, variables, config, path)` writes
them back (see `core.py`). `torch_pickle` reads `.pth` files, `torch_save`
writes them; `names` says where each module lives in the official files;
`backbones` puts ImageNet weights under the networks that use them;
`workdirs` turns converted networks into checkpoints the programs read;
`commands` is what the command line does.
"""

from mirrorgan_jax.convert.core import KINDS, ConversionError, from_torch, to_torch

__all__ = ["KINDS", "ConversionError", "from_torch", "to_torch"]
