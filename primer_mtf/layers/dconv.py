"""Depthwise convolution along a named length dimension (MDHA's core).

    y[t, c] = sum_i w[i, c] * x[t - o_i, c]

with offsets o_i = i (causal: the token and the k-1 before it) or
o_i = i - (k-1)//2 (centred, for encoders: k=3 reads t-1, t and t+1). It is
computed in shift-multiply-add form (k shifted copies scaled per channel), the
fast form on TPU and GPU. A tap contributes nothing where t - o_i falls outside the
row or in another packed example (``segment_ids`` differ), so packed examples never
see each other. The axis is chosen by name, never by position.

:func:`release_style_conv` is the form the authors' release computed: the same taps
with no packing mask, so a packed example's first k-1 tokens read the end of the
example before it. It is kept only to be measured against (``MDHA.conv_form =
"release"``: ``primer-mtf bench``'s ``step_overhead_release_conv`` and a quality run
side by side); it leaks across packed examples and must not be trained on packed
data for real.
"""

import mesh_tensorflow as mtf
import tensorflow.compat.v1 as tf


def offsets(kernel_size, causal=True):
  """o_i for tap i: tap i weighs x[t - o_i]."""
  first = 0 if causal else -((kernel_size - 1) // 2)
  return [first + i for i in range(kernel_size)]


def tap_initial_values(kernel_size, causal=True):
  """The authors' constant initialisation: 0.5 for the current token, 0.5/k else."""
  return [0.5 if o == 0 else 0.5 / kernel_size
          for o in offsets(kernel_size, causal)]


def make_taps(mesh, name, channel_dims, kernel_size, dtype, causal=True):
  """``kernel_size`` variables of shape ``channel_dims`` (one filter a channel)."""
  return [
      mtf.get_variable(mesh, f"{name}_tap{i}", mtf.Shape(channel_dims),
                       initializer=tf.constant_initializer(value),
                       dtype=dtype)
      for i, value in enumerate(tap_initial_values(kernel_size, causal))]


def length_dim_of(x, length_dim):
  """The dimension of ``x`` named like ``length_dim`` (a Dimension or a name)."""
  name = length_dim if isinstance(length_dim, str) else length_dim.name
  dims = [d for d in x.shape.dims if d.name == name]
  if not dims:
    raise ValueError(f"{x} has no dimension named {name!r} to convolve along")
  return dims[0]


def segment_masks(segment_ids, length_dim, kernel_size, dtype, causal=True):
  """{offset: 1.0 where x[t - offset] is in t's packed example, else 0.0} for the
  non-zero offsets, shaped like ``segment_ids``; None without packing."""
  if not isinstance(segment_ids, mtf.Tensor):
    return None
  dim = length_dim_of(segment_ids, length_dim)
  return {offset: mtf.cast(mtf.equal(segment_ids, mtf.shift(
      segment_ids, offset=offset, dim=dim, wrap=False)), dtype)
          for offset in offsets(kernel_size, causal) if offset != 0}


def depthwise_conv(x, taps, length_dim, segment_ids=None, causal=True):
  """Convolves ``x`` along ``length_dim`` with per-channel ``taps``.

  Args:
    x: an mtf.Tensor with ``length_dim`` and the taps' channel dimensions.
    taps: a list of k mtf.Tensors over channel dimensions; taps[i] weighs
      x[t - o_i], see :func:`offsets`.
    length_dim: the mtf.Dimension (or its name) to convolve along.
    segment_ids: optional mtf.Tensor with ``length_dim``; positions of different
      ids do not mix. Non-tensors (no packing) are ignored.
    causal: offsets 0..k-1 (True) or centred on the token (False).

  Returns:
    an mtf.Tensor shaped like ``x``.
  """
  dim = length_dim_of(x, length_dim)
  masks = segment_masks(segment_ids, dim, len(taps), x.dtype, causal)
  y = 0
  for offset, tap in zip(offsets(len(taps), causal), taps):
    if offset == 0:
      y += x * tap
      continue
    shifted = mtf.shift(x, offset=offset, dim=dim, wrap=False)  # x[t-o], 0 outside
    if masks is not None:
      shifted *= masks[offset]
    y += shifted * tap
  return y


def release_style_conv(x, taps, length_dim):
  """The authors' release's causal conv: x shifted by one more position for each
  tap, no packing mask. Equals :func:`depthwise_conv` without segment ids; with
  packed rows it LEAKS: the first k-1 tokens of a packed example read the last
  tokens of the one before it. For benchmarks and side-by-side quality runs only.
  """
  dim = length_dim_of(x, length_dim)
  y = x * taps[0]
  for tap in taps[1:]:
    x = mtf.shift(x, offset=1, dim=dim, wrap=False)
    y += x * tap
  return y

