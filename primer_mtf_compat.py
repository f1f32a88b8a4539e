"""Makes the pinned stack importable: mesh-tensorflow 0.1.21 on TF 2.15, t5 without torch.

Two problems, each fixed here and nowhere else:

* mesh-tensorflow 0.1.21 calls ``ops.register_tensor_conversion_function``, which
  TF 2.15 moved to ``tensor_conversion_registry``. We alias it back before the first
  ``import mesh_tensorflow``.
* ``import t5.models`` imports ``t5.models.hf_model``, which imports torch for a
  PyTorch wrapper this project never uses. When torch is absent we serve a small
  placeholder module instead, so a multi-GB torch need not be installed.

``primer_mtf`` calls :func:`apply` on import. The installed ``primer_mtf_compat.pth``
calls :func:`install_import_hook` at interpreter start, so that T5's own
``t5_mesh_transformer`` binary, which imports mesh-tensorflow and t5.models before it
reads ``--module_import``, also works. The hook is lazy: it imports nothing until
``mesh_tensorflow`` or ``t5.models.hf_model`` is requested.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

_HF_MODULE = "t5.models.hf_model"


def patch_tensorflow():
  """Restores ``ops.register_tensor_conversion_function`` for mesh-tensorflow."""
  from tensorflow.python.framework import ops  # pylint: disable=g-import-not-at-top
  if not hasattr(ops, "register_tensor_conversion_function"):
    from tensorflow.python.framework import tensor_conversion_registry  # pylint: disable=g-import-not-at-top
    ops.register_tensor_conversion_function = (
        tensor_conversion_registry.register_tensor_conversion_function)


def _torch_available():
  return importlib.util.find_spec("torch") is not None


def _placeholder_hf_model():
  module = types.ModuleType(_HF_MODULE)
  module.__doc__ = "Placeholder: t5's PyTorch wrapper needs torch, which is not installed."

  class HfPyTorchModel:  # pylint: disable=too-few-public-methods
    def __init__(self, *args, **kwargs):
      raise ImportError("t5.models.HfPyTorchModel needs torch; primer-mtf does not "
                        "use it. Install torch yourself if you want it.")

  module.HfPyTorchModel = HfPyTorchModel
  return module


class _Loader(importlib.abc.Loader):
  """Serves the placeholder hf_model module."""

  def create_module(self, spec):
    return _placeholder_hf_model()

  def exec_module(self, module):
    pass


class _Finder(importlib.abc.MetaPathFinder):
  """Applies the TF patch before mesh_tensorflow loads; stubs hf_model without torch."""

  def find_spec(self, fullname, path=None, target=None):
    del path, target
    if fullname == "mesh_tensorflow":
      patch_tensorflow()
    elif fullname == _HF_MODULE and not _torch_available():
      return importlib.machinery.ModuleSpec(fullname, _Loader())
    return None  # let the normal finders do the import


def install_import_hook():
  if not any(isinstance(f, _Finder) for f in sys.meta_path):
    sys.meta_path.insert(0, _Finder())


def apply():
  """Patches now and keeps the hook for later imports (idempotent)."""
  install_import_hook()
  patch_tensorflow()
