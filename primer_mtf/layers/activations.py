"""Other names for squared ReLU, so gin files and flags may use any of them.

mesh-tensorflow resolves an activation name with ``getattr(mtf, name)`` in
``mtf.layers.dense_product``, where ``mtf`` is the module
``mesh_tensorflow.ops_with_redefined_builtins``; 0.1.21 already has
``squared_relu`` there. The paper's squared ReLU also goes by ``relu2``,
``relu_squared``, ``squared-relu`` and ``srelu`` elsewhere; each is added to both
namespaces as the very same function.
"""

import mesh_tensorflow as mtf
from mesh_tensorflow import ops_with_redefined_builtins

SQUARED_RELU_ALIASES = ("relu2", "relu_squared", "squared-relu", "srelu")

for _namespace in (mtf, ops_with_redefined_builtins):
  for _alias in SQUARED_RELU_ALIASES:
    if not hasattr(_namespace, _alias):
      setattr(_namespace, _alias, mtf.squared_relu)
