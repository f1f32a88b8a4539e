"""MDHA's pack-safe depthwise convolution as one mesh-tensorflow op, XLA-fused.

:func:`dconv.depthwise_conv` builds the convolution from mtf's shift, multiply and
add ops: about a dozen passes over a [batch, length, heads, d_kv] tensor forward
and as many backward, each memory-bound. On an accelerator XLA fuses them; on CPU
and GPU without XLA each is a kernel of its own. Here the whole convolution is one
``mtf.slicewise`` op (forward) and one for its gradient (the input's gradient and
every tap's), and on each device slice the TensorFlow ops of each are compiled as
one XLA cluster (``tf.xla.experimental.jit_scope``), so a pass reads the
projection once and writes once.

The math is :func:`dconv.depthwise_conv`'s exactly: the same offsets, the same
zero padding at the row's ends, the same packing masks. The length dimension is
never split (a convolution along a split axis would need halos); every other
dimension of the projection may be, and a tap's gradient is summed over the batch
with ``mtf.reduce_sum``, so mtf adds the partial sums of batch-split slices.

``primer_mtf.fused_depthwise_conv.xla_jit = False`` leaves the ops to TensorFlow:
on TPU the whole step is XLA-compiled already, and explicit JIT scopes inside a
TPU computation are best left out.
"""

import contextlib

import gin
import mesh_tensorflow as mtf
import tensorflow.compat.v1 as tf

from primer_mtf.layers import dconv


def _shift(z, offset, axis):
  """z[t - offset] along ``axis`` of one slice, zeros where t - offset is outside."""
  if offset == 0:
    return z
  n = z.shape[axis]
  if abs(offset) >= n:
    return tf.zeros_like(z)
  kept = [slice(None)] * z.shape.rank
  kept[axis] = slice(0, n - offset) if offset > 0 else slice(-offset, n)
  padding = [[0, 0]] * z.shape.rank
  padding[axis] = [offset, 0] if offset > 0 else [0, -offset]
  return tf.pad(z[tuple(kept)], padding)


class _SliceLayout:
  """Where the taps' and segment ids' axes sit among one slice's projection axes."""

  def __init__(self, x, taps, segment_ids, length_dim):
    names = x.shape.dimension_names
    self.rank = len(names)
    self.length_axis = names.index(length_dim.name)
    self.tap_axes = [names.index(d.name) for d in taps[0].shape.dims]
    self.segment_axes = (None if segment_ids is None else
                         [names.index(d.name) for d in segment_ids.shape.dims])

  def _expand(self, z, axes):
    """A slice over ``axes`` (in the projection's order) shaped to broadcast."""
    shape = [1] * self.rank
    for axis, size in zip(axes, z.shape):
      shape[axis] = size
    return tf.reshape(z, shape)

  def tap(self, t, dtype):
    return self._expand(tf.cast(t, dtype), self.tap_axes)

  def masks(self, segment_ids, offsets, dtype):
    """{offset: 1.0 where t - offset is in t's packed example}; None unpacked."""
    if segment_ids is None:
      return None
    length_axis = self.segment_axes.index(self.length_axis)
    return {o: self._expand(tf.cast(tf.equal(
        segment_ids, _shift(segment_ids, o, length_axis)), dtype), self.segment_axes)
            for o in offsets if o != 0}


def _in_order(t, dims):
  """``t`` with its dimensions in the order they have in ``dims``."""
  order = [d for d in dims if d in t.shape.dims]
  return t if order == t.shape.dims else mtf.transpose(t, order)


@gin.configurable(module="primer_mtf")
def fused_depthwise_conv(x, taps, length_dim, segment_ids=None, causal=True,
                         xla_jit=True):
  """:func:`dconv.depthwise_conv`'s convolution as one mtf op (and one for its
  gradient), each an XLA cluster a slice when ``xla_jit``."""
  length_dim = dconv.length_dim_of(x, length_dim)
  offsets = dconv.offsets(len(taps), causal)
  taps = [_in_order(t, x.shape.dims) for t in taps]
  if not isinstance(segment_ids, mtf.Tensor):
    segment_ids = None
  else:
    segment_ids = _in_order(segment_ids, x.shape.dims)
  layout = _SliceLayout(x, taps, segment_ids, length_dim)
  splittable = [d for d in x.shape.dims if d != length_dim]
  compiled = (tf.xla.experimental.jit_scope if xla_jit else contextlib.nullcontext)
  inputs = [x, *taps] + ([segment_ids] if segment_ids is not None else [])

  def unpack(values):
    """(x, taps, segment ids) of one slice."""
    k = len(taps)
    return values[0], values[1:1 + k], (values[1 + k] if len(values) > 1 + k
                                        else None)

  def forward(*values):
    xs, ts, seg = unpack(values)
    with compiled():
      masks = layout.masks(seg, offsets, xs.dtype)
      y = 0
      for o, t in zip(offsets, ts):
        shifted = _shift(xs, o, layout.length_axis)
        if o != 0 and masks is not None:
          shifted *= masks[o]
        y += shifted * layout.tap(t, xs.dtype)
      return y

  def backward(*values):
    dy, (xs, ts, seg) = values[0], unpack(values[1:])
    with compiled():
      masks = layout.masks(seg, offsets, xs.dtype)
      dx, per_example = 0, []
      for o, t in zip(offsets, ts):
        g = dy if o == 0 or masks is None else dy * masks[o]
        dx += _shift(g * layout.tap(t, xs.dtype), -o, layout.length_axis)
        per_example.append(tf.reduce_sum(
            g * _shift(xs, o, layout.length_axis), axis=layout.length_axis))
      return (dx, *per_example)

  def gradient(op, dy):
    summed_over_length = x.shape - length_dim
    dx, *per_example = mtf.slicewise(
        backward, [dy] + inputs,
        output_shape=[x.shape] + [summed_over_length] * len(taps),
        output_dtype=[x.dtype] * (1 + len(taps)), splittable_dims=splittable,
        name="dconv_fused_grad")
    dtaps = [mtf.reduce_sum(g, output_shape=t.shape)
             for g, t in zip(per_example, taps)]
    return [dx, *dtaps] + ([None] if segment_ids is not None else [])

  return mtf.slicewise(forward, inputs, output_shape=x.shape,
                       output_dtype=x.dtype, splittable_dims=splittable,
                       grad_function=gradient, name="dconv_fused")
