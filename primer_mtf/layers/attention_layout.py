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

It is a choice of layer, made in gin and shown in ``operative_config.gin``:
:class:`HeadsMajorSelfAttention` and :class:`HeadsMajorEncDecAttention` are
mesh-tensorflow's layers with this function behind their ``attention_fn`` hook,
and this package's attention layers (MDHA, DoubleHeadsAttention) take
``heads_major``. gin/models/ chooses it in every model, the baseline and Primer
alike, so their ratios compare like with like. mesh-tensorflow itself is left as
it is: ``@transformer_layers.SelfAttention`` stays the stock layer.
``primer_mtf.heads_major_attention.enabled = False`` computes all of them in the
stock order.
"""

import gin
import mesh_tensorflow as mtf
from mesh_tensorflow.transformer import attention as mtf_attention
from mesh_tensorflow.transformer import transformer_layers


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
    return mtf_attention.attention(q, k, v, memory_length_dim, key_dim, value_dim,
                                   *args, **kwargs)
  out = mtf_attention.attention(mtf.transpose(q, order), k, v, memory_length_dim,
                                key_dim, value_dim, *args, **kwargs)
  return mtf.transpose(out, q.shape - key_dim + value_dim)


def attention_fn(stock_fn, heads_major):
  """A layer's attention function: heads-major where chosen and the stock one is
  ``attention.attention`` (``hybrid_attention`` and others are kept)."""
  if heads_major and stock_fn is mtf_attention.attention:
    return heads_major_attention
  return stock_fn


def named_as_stock(cls):
  """Keeps the stock layer's class name, which mesh-tensorflow uses as the layer's
  variable scope (``transformer.sublayer_call_layer``): the variables, and so
  checkpoints, profiles and resumes, are the stock layer's under either layout."""
  cls.__name__ = cls.__mro__[1].__name__
  return cls


@gin.configurable("HeadsMajorSelfAttention", module="primer_mtf")
@named_as_stock
class HeadsMajorSelfAttention(transformer_layers.SelfAttention):
  """mesh-tensorflow's SelfAttention with heads-major dot-product attention."""

  @property
  def attention_fn(self):
    return attention_fn(super().attention_fn, heads_major=True)


@gin.configurable("HeadsMajorEncDecAttention", module="primer_mtf")
@named_as_stock
class HeadsMajorEncDecAttention(transformer_layers.EncDecAttention):
  """mesh-tensorflow's EncDecAttention with heads-major dot-product attention."""

  @property
  def attention_fn(self):
    return attention_fn(super().attention_fn, heads_major=True)
