"""Multi-DConv-Head Attention (So et al., 2021, section 3): SelfAttention whose
Q, K and V each pass through a causal depthwise convolution of width k.

The layer changes ``make_params``: the attention parameters it returns convolve
each projection right after computing it, so ``SelfAttention.call`` (masks,
relative bias, K/V cache, output projection) is reused as it is; and, when
``heads_major``, the ``attention_fn`` hook (layers/attention_layout.py). The taps
have the projection's channel dimensions (heads x d_kv), so under ``heads:model``
they are sharded with the projections and the convolution needs no communication.

Decoding. The convolution at position p reads the pre-conv projections at
p-1 .. p-k+1. In ``first_part`` mode (the prompt) each of Q, K and V records those
k-1 projections before the first decoded position as k-1 states of shape
[batch, heads, d_kv], nearest first; in ``incremental`` mode it convolves with
them and records [P[p], P[p-1], ..., P[p-k+2]]. One state a position keeps a
decoded token's conv at k multiplies and k-1 adds, with no gather or shift,
which matters where decoding is bound by the number of ops. The states are
recorded before SelfAttention's own K/V cache, in the same order in both modes.
"""

import gin
import mesh_tensorflow as mtf
from mesh_tensorflow.transformer import attention
from mesh_tensorflow.transformer import transformer_layers
import tensorflow.compat.v1 as tf

from primer_mtf.layers import attention_layout
from primer_mtf.layers import dconv
from primer_mtf.layers import fused_dconv

_DECODE_MODES = ("first_part", "incremental")


def _select(x, index, dim):
  """x at ``index`` along ``dim`` (zeros where the index is out of range)."""
  return mtf.einsum([x, mtf.one_hot(index, dim, dtype=x.dtype)],
                    output_shape=x.shape - dim)


class SharedQKParams(attention.AttentionParams):
  """Attention params for Primer's shared Q/K representation.

  One projection W_Q (variable ``q``) gives the key representation,
  K = DConv(x W_Q); queries are Q = K W_s with W_s (variable ``qk_share``) a full
  C x C matrix over heads x d_kv. There is no W_K.

  Initialisation as in the authors' release: W_Q ~ N(0, 1/(d_model d_k)), the
  attention's 1/sqrt(d_k) folded into it (``fold_scaling_into_initializer``), and
  W_s truncated-normal with std C^-1/2 (mesh-tensorflow's dense default, which the
  release used for it). W_V and W_O are SelfAttention's.
  """

  def init_weights(self):
    normal = lambda fan_in, scale=1.0: tf.random_normal_initializer(
        stddev=scale * fan_in ** -0.5)
    fold = self.key_dim.size ** -0.5 if self.fold_scaling_into_initializer else 1.0
    self.wq = mtf.get_variable(self.mesh, "q", self.k_shape,
                               initializer=normal(self.memory_input_dim.size, fold),
                               dtype=self.variable_dtype)
    self.share_out_dims = [mtf.Dimension(d.name + "_out", d.size) for d in self.q_dims]
    channels = mtf.Shape(self.k_dims).size
    self.ws = mtf.get_variable(
        self.mesh, "qk_share", mtf.Shape(self.k_dims + self.share_out_dims),
        initializer=tf.truncated_normal_initializer(stddev=channels ** -0.5),
        dtype=self.variable_dtype)
    self.wv = mtf.get_variable(self.mesh, "v", self.v_shape,
                               initializer=normal(self.memory_input_dim.size),
                               dtype=self.variable_dtype)
    self.wo = mtf.get_variable(
        self.mesh, "o", self.o_shape,
        initializer=normal(mtf.Shape(self.query_heads_dims + [self.value_dim]).size),
        dtype=self.variable_dtype)

  def compute_shared(self, antecedent):
    """x W_Q: the pre-conv key representation."""
    ret = mtf.layers.us_einsum([antecedent, self.wq],
                               reduced_dims=[self.memory_input_dim])
    if self.combine_dims:
      ret = mtf.replace_dimensions(ret, ret.shape.dims[-1], self.k_dims)
    return ret

  def queries_from_keys(self, k):
    """Q = K W_s, back in the (heads, d_kv) dimensions of K."""
    q = mtf.einsum([k, self.ws], reduced_dims=self.k_dims)
    for out_dim, dim in zip(self.share_out_dims, self.q_dims):
      q = mtf.rename_dimension(q, out_dim.name, dim.name)
    if not self.fold_scaling_into_initializer:
      q *= self.key_dim.size ** -0.5
    return q

  def compute_k(self, memory_antecedent):
    raise NotImplementedError("shared Q/K: keys come from compute_shared")


class _ConvolvedProjections:
  """Attention params whose compute_q/k/v return convolved projections."""

  def __init__(self, params, layer, context):
    self._params = params
    self._layer = layer
    self._context = context

  def __getattr__(self, name):
    return getattr(self._params, name)

  def compute_q(self, x):
    return self._layer.convolve(self._context, self._params.compute_q(x), "q",
                                self._context.length_dim)

  def compute_k(self, m):
    return self._layer.convolve(self._context, self._params.compute_k(m), "k",
                                self._layer.memory_length(self._context))

  def compute_v(self, m):
    return self._layer.convolve(self._context, self._params.compute_v(m), "v",
                                self._layer.memory_length(self._context))


class _SharedQKProjections(_ConvolvedProjections):
  """K = DConv(x W_Q), Q = K W_s: the keys are computed once, by whichever of
  compute_q and compute_k SelfAttention calls first, and reused by the other."""

  def __init__(self, params, layer, context):
    super().__init__(params, layer, context)
    self._keys = None    # the convolved keys, once computed
    self._keys_length_dim = None   # the length dimension they run along

  def _shared_keys(self, x, length_dim):
    """DConv(x W_Q) along ``length_dim``, computed on the first call only."""
    if self._keys is None:
      self._keys = self._layer.convolve(
          self._context, self._params.compute_shared(x), "k", length_dim)
      self._keys_length_dim = length_dim
    keys = self._keys
    if self._context.mode != "incremental" and self._keys_length_dim != length_dim:
      keys = mtf.rename_dimension(keys, self._keys_length_dim.name, length_dim.name)
    return keys

  def compute_q(self, x):
    return self._params.queries_from_keys(
        self._shared_keys(x, self._context.length_dim))

  def compute_k(self, m):
    return self._shared_keys(m, self._layer.memory_length(self._context))


@gin.configurable(module="primer_mtf")
class MDHA(transformer_layers.SelfAttention):
  """Self-attention with a causal depthwise convolution after Q, K and V."""

  CONV_FORMS = ("fused", "pack_safe", "release")

  def __init__(self, kernel_size=3, share_qk_rep=False, causal=True,
               conv_form="fused", heads_major=False, **kwargs):
    """Args:
      kernel_size: taps per channel (the paper's width is 3).
      share_qk_rep: Primer's shared Q/K representation (no W_K).
      causal: True for decoders; False centres the kernel on each token (k=3
        reads t-1, t, t+1), for encoder self-attention, which never decodes.
      conv_form: how the convolution runs over a whole sequence (decoding is
        the same in all). "fused": the pack-safe conv as one mtf op whose forward
        and backward passes are each one XLA cluster a device slice
        (layers/fused_dconv.py). "pack_safe": the same math from mtf's shift,
        multiply and add ops (layers/dconv.py). "release": the authors'
        release's form, the same taps with no packing mask: it LEAKS across
        packed examples; for benchmarks (``primer-mtf bench``'s
        step_overhead_release_conv) and side-by-side quality runs only. Two
        other exact forms (the masks computed once a layer; Q, K and V as one
        stacked projection and conv) were measured no cheaper on CPU and
        removed (benchmarks/results/conv_forms_small_*.json).
      heads_major: the dot-product attention in the heads-major layout, as
        HeadsMajorSelfAttention does it (layers/attention_layout.py).
      **kwargs: SelfAttention's arguments.
    """
    super().__init__(**kwargs)
    if kernel_size < 1:
      raise ValueError(f"MDHA.kernel_size must be >= 1, got {kernel_size}")
    if share_qk_rep and self.num_memory_heads:
      raise ValueError("MDHA.share_qk_rep needs num_memory_heads=0")
    if self.shared_kv:
      raise ValueError("MDHA convolves K and V separately; set shared_kv=False")
    if conv_form not in self.CONV_FORMS:
      raise ValueError(f"MDHA.conv_form must be one of {self.CONV_FORMS}, "
                       f"got {conv_form!r}")
    if conv_form == "release" and not causal:
      raise ValueError("MDHA.conv_form='release' is the release's causal conv")
    self.kernel_size = kernel_size
    self.share_qk_rep = share_qk_rep
    self.causal = causal
    self.conv_form = conv_form
    self.heads_major = heads_major

  @property
  def attention_fn(self):
    return attention_layout.attention_fn(super().attention_fn, self.heads_major)

  def make_params(self, context):
    if not self.share_qk_rep:
      return _ConvolvedProjections(super().make_params(context), self, context)
    heads = [mtf.Dimension("heads", self.num_heads)]
    params = SharedQKParams(
        context.mesh, query_input_dim=context.model.model_dim,
        memory_input_dim=context.model.model_dim,
        output_dim=context.model.model_dim, key_dim=self.kv_dim,
        value_dim=self.kv_dim, query_heads_dims=heads, memory_heads_dims=heads,
        variable_dtype=context.variable_dtype, shared_kv=False,
        ensemble_dim=context.model.ensemble_dim, combine_dims=self.combine_dims,
        keep_query_heads_dims=self.keep_query_heads_dims,
        fold_scaling_into_initializer=self.fold_scaling_into_initializer)
    return _SharedQKProjections(params, self, context)

  def convolve(self, context, projection, name, length_dim):
    """Causal, packing-aware depthwise conv of one projection along length_dim."""
    channel_dims = [d for d in projection.shape.dims
                    if d.name != length_dim.name and d not in context.batch_dims]
    taps = dconv.make_taps(context.mesh, f"{name}_dconv", channel_dims,
                           self.kernel_size, context.variable_dtype, self.causal)
    if context.mode in _DECODE_MODES and not self.causal:
      raise ValueError("a centred (causal=False) MDHA reads the next token and "
                       "cannot decode; use it in encoders only")
    if context.mode == "incremental":
      return self._convolve_one_step(context, projection, taps)
    if context.mode == "first_part":
      self._record_previous_projections(context, projection, length_dim)
    if self.conv_form == "release":
      return dconv.release_style_conv(projection, taps, length_dim)
    conv = (fused_dconv.fused_depthwise_conv if self.conv_form == "fused"
            else dconv.depthwise_conv)
    return conv(projection, taps, length_dim, self.segment_ids(context, length_dim),
                self.causal)

  def segment_ids(self, context, length_dim):
    """Packed-example ids along ``length_dim``; taps never cross them."""
    segment_ids = context.sequence_id
    if isinstance(segment_ids, mtf.Tensor) and context.length_dim != length_dim:
      segment_ids = self.rename_length_to_memory_length(segment_ids, context)
    return segment_ids

  def _record_previous_projections(self, context, projection, length_dim):
    """State for decoding: projections at initial_position-1 .. -(k-1)."""
    context.record_new_states([
        _select(projection, context.initial_position - s, length_dim)
        for s in range(1, self.kernel_size)])

  def _convolve_one_step(self, context, projection, taps):
    """One position: taps[0]*P[p] + sum_s taps[s]*P[p-s], P[p-s] from the states."""
    before = context.get_states(self.kernel_size - 1)   # P[p-1], ..., P[p-k+1]
    y = projection * taps[0]
    for previous, tap in zip(before, taps[1:]):
      y += previous * tap
    context.record_new_states([projection, *before][:len(before)])   # none at k=1
    return y
