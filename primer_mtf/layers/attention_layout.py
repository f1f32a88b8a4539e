"""Dot-product attention with heads before length: the same math, laid out for BatchMatMul.

mesh-tensorflow's ``attention.attention`` builds the logits in the query's order of
dimensions, ``[batch, length, heads, memory_length]``. TensorFlow's Einsum wants
the batch-like dimensions (batch, heads) first, so each of the six attention
einsums of a training step (QK^T and AV, and their gradients) copies that tensor,
``memory_length / d_kv`` times the size of q, into another order first. Moving the
heads before the length in q, and back in the output, costs two copies of q-sized
tensors instead; nothing else changes (the same einsums, reductions and softmax).

Measured side by side (``primer-mtf bench``'s ``attention_layout_small``,
``benchmarks/results/bench_utilisation_profile_small_8x512.json``): the vanilla
transformer's training step at ``small`` with 8 x 512 tokens takes 0.89x the time.
Every attention layer of the stack calls ``attention.attention`` through
``SelfAttention.attention_fn``, the stock ones included, so :func:`install` puts
the layout there once, for the baseline and Primer alike;
``primer_mtf.heads_major_attention.enabled = False`` restores the stock order.
"""

import gin
import mesh_tensorflow as mtf
from mesh_tensorflow.transformer import attention as mtf_attention

_STOCK_ATTENTION = mtf_attention.attention


def heads_major_order(q_shape, k_shape, key_dim):
  """q's dimensions with those it shares with k (batch, heads) first, key_dim last."""
  shared = [d for d in q_shape.dims if d in k_shape.dims and d != key_dim]
  rest = [d for d in q_shape.dims if d not in shared and d != key_dim]
  return mtf.Shape(shared + rest + [key_dim])


@gin.configurable("heads_major_attention", module="primer_mtf")
def heads_major_attention(q, k, v, memory_length_dim, key_dim, value_dim, *args,
                          enabled=True, **kwargs):
  """``mtf_attention.attention`` computed in the heads-major order; returns the
  stock shape, ``q.shape - key_dim + value_dim``. Takes the stock arguments,
  positional ones too (enc_dec_attention passes the bias by position)."""
  order = heads_major_order(q.shape, k.shape, key_dim)
  if not enabled or order == q.shape:   # incremental decoding: no length in q
    return _STOCK_ATTENTION(q, k, v, memory_length_dim, key_dim, value_dim, *args,
                            **kwargs)
  out = _STOCK_ATTENTION(mtf.transpose(q, order), k, v, memory_length_dim, key_dim,
                         value_dim, *args, **kwargs)
  return mtf.transpose(out, q.shape - key_dim + value_dim)


def install():
  """Routes mesh-tensorflow's attention layers through the heads-major layout."""
  mtf_attention.attention = heads_major_attention
