"""The XLA-fused depthwise conv against numpy and against the shift-multiply-add
form: forward values and the gradients of the input and of every tap, with the
ops compiled by XLA and left to TensorFlow, on one device and on a 2x2 mesh that
splits the batch and the heads."""
import mesh_tensorflow as mtf
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import primer_mtf  # pylint: disable=unused-import
from primer_mtf.layers import dconv
from primer_mtf.layers import fused_dconv

from test_dconv import numpy_centred_dconv, numpy_dconv

pytestmark = pytest.mark.graph

NAMES = ("batch", "length", "heads", "d_kv")
MESHES = {"one device": ("", ""), "2x2": ("b:2;h:2", "batch:b;heads:h")}


def run_both(x, taps, segments, weights, order=NAMES, causal=True, xla_jit=True,
             mesh="one device"):
  """Each form's y and the gradients of sum(y * weights) with respect to x and
  to every tap; numpy [batch, length, heads, d_kv] in and out."""
  mesh_shape, layout = MESHES[mesh]
  with tf.Graph().as_default():
    graph = mtf.Graph()
    mtf_mesh = mtf.Mesh(graph, "mesh")
    dims = {n: mtf.Dimension(n, s) for n, s in zip(NAMES, x.shape)}
    perm = [NAMES.index(n) for n in order]
    shape = mtf.Shape([dims[n] for n in order])
    mx = mtf.import_tf_tensor(mtf_mesh, tf.constant(np.transpose(x, perm)), shape)
    mw = mtf.import_tf_tensor(mtf_mesh, tf.constant(np.transpose(weights, perm)),
                              shape)
    mtaps = [mtf.import_tf_tensor(mtf_mesh, tf.constant(t),
                                  mtf.Shape([dims["heads"], dims["d_kv"]]))
             for t in taps]
    mseg = None if segments is None else mtf.import_tf_tensor(
        mtf_mesh, tf.constant(segments), mtf.Shape([dims["batch"], dims["length"]]))
    outputs = []
    for conv in (fused_dconv.fused_depthwise_conv, dconv.depthwise_conv):
      kwargs = {"xla_jit": xla_jit} if conv is fused_dconv.fused_depthwise_conv else {}
      y = conv(mx, mtaps, "length", mseg, causal, **kwargs)
      loss = mtf.reduce_sum(y * mw)
      grads = mtf.gradients([loss], [mx, *mtaps])
      canonical = mtf.Shape([dims[n] for n in NAMES])
      outputs.append([mtf.transpose(y, canonical), mtf.transpose(grads[0], canonical),
                      *grads[1:]])
    devices = [""] * mtf.convert_to_shape(mesh_shape).size
    impl = mtf.placement_mesh_impl.PlacementMeshImpl(mesh_shape, layout, devices)
    lowering = mtf.Lowering(graph, {mtf_mesh: impl})
    tf_outputs = [[lowering.export_to_tf_tensor(t) for t in ts] for ts in outputs]
    with tf.Session() as sess:
      return sess.run(tf_outputs)


def numpy_tap_gradients(x, weights, segments, kernel_size):
  """d sum(y * w) / d taps[s] = sum over b, t of w[b, t] x[b, t-s], where t-s is
  in the row and in t's example."""
  grads = np.zeros((kernel_size,) + x.shape[2:], x.dtype)
  for b, t in np.ndindex(*x.shape[:2]):
    for s in range(kernel_size):
      if t - s >= 0 and segments[b, t - s] == segments[b, t]:
        grads[s] += weights[b, t] * x[b, t - s]
  return grads


def inputs(seed, kernel_size, batch=4, length=12):
  rng = np.random.RandomState(seed)
  x = rng.randn(batch, length, 2, 3).astype(np.float32)
  weights = rng.randn(*x.shape).astype(np.float32)
  taps = rng.randn(kernel_size, 2, 3).astype(np.float32)
  if length < 10:   # too short for the packed rows below
    return x, taps, None, weights
  segments = np.array([[1] * length, [1] * 5 + [2] * (length - 5),
                       [1] * 3 + [2] * 5 + [3] * (length - 8),
                       [1] * 2 + [2] * (length - 4) + [0] * 2][:batch], np.int32)
  return x, taps, segments, weights


@pytest.mark.parametrize("xla_jit", [True, False])
@pytest.mark.parametrize("mesh", sorted(MESHES))
@pytest.mark.parametrize("kernel_size", [1, 3, 4])
def test_causal_values_and_gradients_match_numpy_and_the_unfused_form(
    kernel_size, mesh, xla_jit):
  x, taps, segments, weights = inputs(kernel_size, kernel_size)
  fused, unfused = run_both(x, taps, segments, weights, xla_jit=xla_jit, mesh=mesh)
  np.testing.assert_allclose(fused[0], numpy_dconv(x, taps, segments), rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(np.stack(fused[2:]),
                             numpy_tap_gradients(x, weights, segments, kernel_size),
                             rtol=1e-4, atol=1e-4)
  for got, want in zip(fused, unfused):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("order", [("batch", "heads", "length", "d_kv"),
                                   ("d_kv", "length", "batch", "heads")])
def test_the_length_axis_and_the_taps_are_found_by_name(order):
  x, taps, segments, weights = inputs(7, 3)
  fused, unfused = run_both(x, taps, segments, weights, order=order)
  np.testing.assert_allclose(fused[0], numpy_dconv(x, taps, segments), rtol=1e-5,
                             atol=1e-5)
  for got, want in zip(fused, unfused):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mesh", sorted(MESHES))
def test_centred_and_unpacked_forms_match(mesh):
  x, taps, _, weights = inputs(11, 3)
  fused, unfused = run_both(x, taps, None, weights, causal=False, mesh=mesh)
  np.testing.assert_allclose(fused[0], numpy_centred_dconv(x, taps), rtol=1e-5,
                             atol=1e-5)
  for got, want in zip(fused, unfused):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_kernel_longer_than_the_row_reads_only_the_row():
  x, taps, _, weights = inputs(5, 6, batch=2, length=4)
  segments = np.array([[1, 1, 1, 1], [1, 2, 2, 0]], np.int32)
  fused, unfused = run_both(x, taps, segments, weights)
  np.testing.assert_allclose(fused[0], numpy_dconv(x, taps, segments), rtol=1e-5,
                             atol=1e-5)
  for got, want in zip(fused, unfused):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
