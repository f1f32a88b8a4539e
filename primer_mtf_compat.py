"""Makes the pinned stack importable: mesh-tensorflow 0.1.21 on TF 2.15, t5 without torch.

Two problems, each fixed here and nowhere else:

* mesh-tensorflow 0.1.21 calls ``ops.register_tensor_conversion_function`` at
  import, which TF 2.15 moved to ``tensor_conversion_registry``:
  :func:`alias_tensor_conversion_registration` puts the alias back. It must run
  before the first ``import mesh_tensorflow``; it is the one attribute this
  project adds to TensorFlow, and it changes nothing when the attribute exists.
* ``import t5.models`` imports ``t5.models.hf_model``, which imports torch for a
  PyTorch wrapper this project never uses. When torch is absent the import hook
  serves a small placeholder module instead, so a multi-GB torch need not be
  installed.

Why a ``.pth`` hook. T5's own binary, ``t5_mesh_transformer``, imports
``t5.models`` (and so mesh-tensorflow) on its first line, before it reads
``--module_import``; no module it could import would come in time. Tried with
every ``.pth`` file of the venv but this one: ``t5_mesh_transformer --helpfull``
ends in ``AttributeError: module 'tensorflow.python.framework.ops' has no attribute
'register_tensor_conversion_function'`` (from mesh_tensorflow/tpu_variables.py);
with it, it prints its flags. So setup.py installs ``primer_mtf_compat.pth``, which
calls :func:`install_import_hook` at interpreter start. The hook is lazy: it
imports nothing, and changes nothing, until ``mesh_tensorflow`` or
``t5.models.hf_model`` is first requested.

``import primer_mtf`` calls :func:`make_stack_importable` before it imports
mesh-tensorflow, for a process that started without the hook (another Python, a
checkout on ``PYTHONPATH``); in the venv the hook has done both steps already.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

_HF_MODULE = "t5.models.hf_model"


def alias_tensor_conversion_registration():
  """Adds ``ops.register_tensor_conversion_function`` where TF has no such name.

  mesh-tensorflow 0.1.21 (mesh_tensorflow/tpu_variables.py) registers a
  conversion function through ``tensorflow.python.framework.ops`` at import;
  TF 2.15 keeps that function only in ``tensor_conversion_registry``. The alias is
  the very same function, under its old name.
  """
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
  """Adds the TF alias before mesh_tensorflow loads; stubs hf_model without torch."""

  def find_spec(self, fullname, path=None, target=None):
    del path, target
    if fullname == "mesh_tensorflow":
      alias_tensor_conversion_registration()
    elif fullname == _HF_MODULE and not _torch_available():
      return importlib.machinery.ModuleSpec(fullname, _Loader())
    return None  # let the normal finders do the import


def install_import_hook():
  """Puts the finder first on ``sys.meta_path`` (once); the ``.pth`` calls it."""
  if not any(isinstance(f, _Finder) for f in sys.meta_path):
    sys.meta_path.insert(0, _Finder())


def make_stack_importable():
  """Both steps now, for a process the ``.pth`` did not start (idempotent): the
  hook, for t5.models imported later, and the alias, for mesh-tensorflow."""
  install_import_hook()
  alias_tensor_conversion_registration()

