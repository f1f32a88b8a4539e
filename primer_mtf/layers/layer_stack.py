"""Primer's pre/post-norm layer stack.

Attention sublayers are pre-norm, ``x + f(N(x))``; feed-forward sublayers normalise
their output inside the residual, ``x + N(f(x))``. The stack decides per layer, by
type, through two sublayers that consult it; everything else is mesh-tensorflow's
``LayerStack``. Bind it with ``make_layer_stack.layer_stack_cls`` (the builder's
own hook), so the model really uses it.
"""

import gin
from mesh_tensorflow.transformer import transformer
from mesh_tensorflow.transformer import transformer_layers

from primer_mtf.layers import norms


def sublayer_pre_norm(x, layer_stack, context):
  """N(x) before a pre-norm layer; identity before a post-norm one."""
  if layer_stack.is_post_norm(context.current_layer):
    return x
  return layer_stack.norm(x, layer_stack, context, name="pre_norm")


def sublayer_post_norm(x, layer_stack, context):
  """N(f(x)) after a post-norm layer; identity after a pre-norm one."""
  if not layer_stack.is_post_norm(context.current_layer):
    return x
  return layer_stack.norm(x, layer_stack, context, name="post_norm")


@gin.configurable(module="primer_mtf")
class PrePostNormLayerStack(transformer.LayerStack):
  """LayerStack with pre-norm attention and post-norm feed-forward layers."""

  def __init__(self, layers, norm=norms.sublayer_primer_norm,
               post_norm_layers=(transformer_layers.DenseReluDense,),
               dropout_rate=0.0, recompute_grads=False):
    self.norm = norm
    self.post_norm_layers = tuple(post_norm_layers)
    dropout = lambda x, stack, context: transformer.sublayer_dropout(
        x, stack, context, dropout_rate=dropout_rate)
    super().__init__(
        layers,
        sublayers_initial=[dropout],
        sublayers_per_layer=[sublayer_pre_norm, transformer.sublayer_call_layer,
                             sublayer_post_norm, dropout,
                             transformer.sublayer_residual],
        sublayers_final=[lambda x, stack, context: norm(x, stack, context,
                                                        name="final_norm"),
                         dropout],
        recompute_grads=recompute_grads)

  def is_post_norm(self, layer):
    return isinstance(layer, self.post_norm_layers)
