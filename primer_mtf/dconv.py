"""Causal depthwise convolution along a named length dimension (MDHA's core).

    y[t, c] = sum_{s=0}^{k-1} w[s, c] * x[t - s, c]

in shift-multiply-add form (k shifted copies scaled per channel), the fast form on
TPU and GPU. Tap s contributes nothing where t - s < 0 or where position t - s
belongs to another packed example (``segment_ids`` differ), so packed examples
never see each other. The axis is chosen by name, never by position.
"""

import mesh_tensorflow as mtf
import tensorflow.compat.v1 as tf


def tap_initial_values(kernel_size):
  """The authors' constant initialisation: 0.5 for the current token, 0.5/k else."""
  return [0.5] + [0.5 / kernel_size] * (kernel_size - 1)


def make_taps(mesh, name, channel_dims, kernel_size, dtype):
  """``kernel_size`` variables of shape ``channel_dims`` (one filter a channel)."""
  return [
      mtf.get_variable(mesh, f"{name}_tap{s}", mtf.Shape(channel_dims),
                       initializer=tf.constant_initializer(value),
                       dtype=dtype)
      for s, value in enumerate(tap_initial_values(kernel_size))]


def causal_depthwise_conv(x, taps, length_dim, segment_ids=None):
  """Convolves ``x`` along ``length_dim`` with per-channel ``taps``.

  Args:
    x: an mtf.Tensor with ``length_dim`` and the taps' channel dimensions.
    taps: a list of k mtf.Tensors over channel dimensions; taps[s] weighs x[t-s].
    length_dim: the mtf.Dimension (or its name) to convolve along.
    segment_ids: optional mtf.Tensor with ``length_dim``; positions of different
      ids do not mix. Non-tensors (no packing) are ignored.

  Returns:
    an mtf.Tensor shaped like ``x``.
  """
  name = length_dim if isinstance(length_dim, str) else length_dim.name
  dims = [d for d in x.shape.dims if d.name == name]
  if not dims:
    raise ValueError(f"{x} has no dimension named {name!r} to convolve along")
  dim = dims[0]
  y = x * taps[0]
  for s, tap in enumerate(taps[1:], start=1):
    shifted = mtf.shift(x, offset=s, dim=dim, wrap=False)  # x[t-s], zero for t<s
    if isinstance(segment_ids, mtf.Tensor):
      same = mtf.equal(segment_ids,
                       mtf.shift(segment_ids, offset=s, dim=dim, wrap=False))
      shifted *= mtf.cast(same, x.dtype)
    y += shifted * tap
  return y
