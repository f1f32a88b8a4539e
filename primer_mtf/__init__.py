"""primer-mtf: Primer (So et al., 2021) and its baselines in Mesh TensorFlow.

Importing the package registers its gin configurables (all under the gin module
``primer_mtf``), which is all that ``t5_mesh_transformer --module_import=primer_mtf``
needs. The code is grouped by role: ``layers/``, ``data/``, ``planning/``, ``running/``.
"""
from primer_mtf import quiet

quiet.set_tf_log_level()

# pylint: disable=g-import-not-at-top,wrong-import-position
with quiet.native_stderr_filtered():
  import primer_mtf_compat

  primer_mtf_compat.apply()
  import tensorflow.compat.v1  # the C++ runtime's start-up lines come here

from primer_mtf.data.tasks import corpus_task
from primer_mtf.data.text2text import text2text_task
from primer_mtf.layers import activations
from primer_mtf.layers import norms
from primer_mtf.layers.layer_stack import PrePostNormLayerStack
from primer_mtf.layers.mdha import MDHA
from primer_mtf.planning.accelerators import accelerator
from primer_mtf.running.progress import train_with_progress

__all__ = ["MDHA", "PrePostNormLayerStack", "accelerator", "activations",
           "corpus_task", "norms", "text2text_task", "train_with_progress"]
