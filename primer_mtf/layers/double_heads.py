"""Double-heads attention: the Evolved Transformer decoder's self-attention.

The Evolved Transformer (So et al., 2019) found decoder self-attention with twice
the heads, each half as wide. With num_heads x key_value_size fixed the
projections keep their shapes (heads x d_kv channels), so the parameters and
matmul FLOPs are SelfAttention's; only the split of the channels into heads, and
so the attention pattern, differs. Only the constructor changes, and the
``attention_fn`` hook when ``heads_major``: SelfAttention's call, masks, relative
bias and K/V cache are reused as they are.
"""

import gin
from mesh_tensorflow.transformer import transformer_layers

from primer_mtf.layers import attention_layout


@gin.configurable(module="primer_mtf")
class DoubleHeadsAttention(transformer_layers.SelfAttention):
  """SelfAttention with 2 x num_heads heads of key_value_size / 2."""

  def __init__(self, num_heads=8, key_value_size=128, heads_major=False, **kwargs):
    """Args:
      num_heads: the base number of heads (the model's ``num_heads``); the layer
        attends with twice as many.
      key_value_size: the base head size (``d_kv``); must be even.
      heads_major: the dot-product attention in the heads-major layout, as
        HeadsMajorSelfAttention does it (layers/attention_layout.py).
      **kwargs: SelfAttention's other arguments.
    """
    if key_value_size % 2:
      raise ValueError(
          f"DoubleHeadsAttention halves key_value_size; {key_value_size} is odd")
    super().__init__(num_heads=2 * num_heads, key_value_size=key_value_size // 2,
                     **kwargs)
    self.heads_major = heads_major

  @property
  def attention_fn(self):
    return attention_layout.attention_fn(super().attention_fn, self.heads_major)
