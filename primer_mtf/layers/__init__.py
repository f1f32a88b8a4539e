"""Layers: heads-major attention, the depthwise conv, MDHA, primer norm, the pre/post stack.

Each module registers its gin configurables under the ``primer_mtf`` gin module, so
gin files write ``@primer_mtf.MDHA`` whatever the Python path.
"""
