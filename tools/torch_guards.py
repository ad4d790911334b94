"""Run-time guards shared by the tools that run the official PyTorch code
(`make_torch_fixtures.py`, `time_torch_step.py`): nothing is downloaded, and
module attributes are patched only for the duration of a `with`."""

import contextlib


@contextlib.contextmanager
def patched(obj, name, value):
  """`obj.name` is `value` inside the block, its old value after."""
  old = getattr(obj, name)
  setattr(obj, name, value)
  try:
    yield
  finally:
    setattr(obj, name, old)


def install_no_download_guards(tool: str, *more):
  """Every weight download of torch and torchvision (and of the extra
  (module, attribute) pairs given) raises, naming the tool."""
  import torch.hub  # pylint: disable=import-outside-toplevel
  import torch.utils.model_zoo  # pylint: disable=import-outside-toplevel
  import torchvision.models._api  # pylint: disable=import-outside-toplevel

  def refuse(*args, **kwargs):
    del kwargs
    raise RuntimeError(f"{tool}: download refused: {args[:1]}")

  targets = [(torch.utils.model_zoo, "load_url"), (torch.hub, "load_state_dict_from_url"),
             (torchvision.models._api, "load_state_dict_from_url"), *more]
  for module, attribute in targets:
    setattr(module, attribute, refuse)
