"""primer-mtf: Primer (So et al., 2021) and its baselines in Mesh TensorFlow.

Importing the package registers its gin configurables, which is all that
``t5_mesh_transformer --module_import=primer_mtf`` needs.
"""
import os

# TF's C++ INFO lines (and mesh-tensorflow's per-step tf.Print) drown the
# progress report; warnings and errors still show. Set it yourself to override.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import primer_mtf_compat  # pylint: disable=g-import-not-at-top

primer_mtf_compat.apply()

# pylint: disable=g-import-not-at-top,wrong-import-position
from primer_mtf.layers import activations
from primer_mtf.layers import norms
from primer_mtf.planning import planner
from primer_mtf.running import progress
from primer_mtf.data import tasks
from primer_mtf.layers.layer_stack import PrePostNormLayerStack
from primer_mtf.layers.mdha import MDHA
from primer_mtf.running.progress import train_with_progress
from primer_mtf.data.tasks import corpus_task

__all__ = ["MDHA", "PrePostNormLayerStack", "activations", "corpus_task", "norms",
           "planner", "progress", "tasks", "train_with_progress"]
