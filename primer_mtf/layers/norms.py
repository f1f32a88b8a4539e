"""Primer's normalisation: LayerNorm computed with the pseudo-variance E[x(x-mu)].

    y = (x - mu) * rsqrt(mean(x * (x - mu)) + eps) * scale + bias

mean(x (x - mu)) equals mean((x - mu)^2), so this is LayerNorm mathematically; it is
the form the search found, kept here so Primer is built as the paper built it.
"""

import gin
import mesh_tensorflow as mtf
import tensorflow.compat.v1 as tf


def primer_norm(x, dim, epsilon=1e-6, name="primer_norm", variable_dtype=None):
  """Normalises ``x`` over ``dim`` with a learned scale and bias."""
  with tf.variable_scope(name):
    scale = mtf.get_variable(x.mesh, "scale", mtf.Shape([dim]),
                             initializer=tf.ones_initializer(),
                             dtype=variable_dtype or x.dtype)
    bias = mtf.get_variable(x.mesh, "bias", mtf.Shape([dim]),
                            initializer=tf.zeros_initializer(),
                            dtype=variable_dtype or x.dtype)
  centered = x - mtf.reduce_mean(x, reduced_dim=dim)
  pseudo_variance = mtf.reduce_mean(x * centered, reduced_dim=dim)
  return centered * mtf.rsqrt(pseudo_variance + epsilon) * scale + bias


@gin.configurable(module="primer_mtf")
def sublayer_primer_norm(x, layer_stack, context, epsilon=1e-6, name="primer_norm"):
  """LayerStack sublayer form of :func:`primer_norm` over d_model."""
  del layer_stack
  return primer_norm(x, context.model.model_dim, epsilon, name,
                     context.variable_dtype)
