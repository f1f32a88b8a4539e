"""primer-mtf: Primer (So et al., 2021) and its baselines in Mesh TensorFlow.

Importing the package registers its gin configurables (all under the gin module
``primer_mtf``), which is all that ``t5_mesh_transformer --module_import=primer_mtf``
needs. The code is grouped by role: ``layers/``, ``data/``, ``planning/``, ``training/`` (inside training), ``commands/``, ``bench/``.

Importing changes no attribute of mesh-tensorflow or TensorFlow
(tests/test_no_patches.py): the heads-major attention is a layer chosen in gin
(``HeadsMajorSelfAttention``, layers/attention_layout.py). The one compat step,
TF's old name that mesh-tensorflow 0.1.21 imports, is ``primer_mtf_compat``'s and
runs before mesh-tensorflow is first imported (normally at interpreter start).

One exception: when the ``primer-mtf`` command is the program (``primer-mtf`` or
``python -m primer_mtf``), the stack loads only once its flags are parsed (the
command calls :func:`load`), so ``--help`` and a usage error need no TensorFlow.
"""
import os
import sys

__all__ = ["HeadsMajorEncDecAttention", "HeadsMajorSelfAttention", "MDHA",
           "PrePostNormLayerStack", "accelerator", "corpus_task", "load", "norms",
           "text2text_task", "train_with_progress"]


def load():
  """Imports the stack and registers every gin configurable (once)."""
  if "MDHA" in globals():
    return
  # pylint: disable=g-import-not-at-top,redefined-outer-name,unused-import
  from primer_mtf import quiet
  quiet.set_tf_log_level()
  with quiet.native_stderr_filtered():
    import primer_mtf_compat
    primer_mtf_compat.make_stack_importable()   # done already under the .pth hook
    import tensorflow.compat.v1  # the C++ runtime's start-up lines come here
  from primer_mtf.data.tasks import corpus_task
  from primer_mtf.data.text2text import text2text_task
  from primer_mtf.layers.attention_layout import HeadsMajorEncDecAttention
  from primer_mtf.layers.attention_layout import HeadsMajorSelfAttention
  from primer_mtf.layers import norms
  from primer_mtf.layers.layer_stack import PrePostNormLayerStack
  from primer_mtf.layers.mdha import MDHA
  from primer_mtf.planning.accelerators import accelerator
  from primer_mtf.training.progress import train_with_progress
  globals().update({k: v for k, v in locals().items() if k in __all__})


def __getattr__(name):   # the command's lazy start: load on first use
  if name in __all__:
    load()
    return globals()[name]
  raise AttributeError(f"module 'primer_mtf' has no attribute {name!r}")


def _the_command_is_starting():
  """``primer-mtf``, or ``python -m primer_mtf`` (argv[0] is "-m" while Python
  imports the package it is about to run)."""
  return os.path.basename(sys.argv[0]) == "primer-mtf" or sys.argv[:1] == ["-m"]


if not _the_command_is_starting():
  load()
