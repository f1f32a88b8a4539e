"""The causal depthwise convolution against a numpy reference."""
import mesh_tensorflow as mtf
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import primer_mtf  # pylint: disable=unused-import
from primer_mtf.layers import dconv


def numpy_dconv(x, taps, segments):
  """y[b,t,c] = sum_s taps[s,c] * x[b,t-s,c], only where t-s >= 0 and same segment."""
  batch, length = x.shape[:2]
  y = np.zeros_like(x)
  for b in range(batch):
    for t in range(length):
      for s in range(taps.shape[0]):
        if t - s >= 0 and segments[b, t - s] == segments[b, t]:
          y[b, t] += taps[s] * x[b, t - s]
  return y


def run_mtf_dconv(x, taps, segments, order=("batch", "length", "heads", "d_kv"),
                  causal=True):
  """Runs dconv on a mesh, with x's dimensions in the given order."""
  with tf.Graph().as_default():
    return _run_mtf_dconv(x, taps, segments, order, causal)


def _run_mtf_dconv(x, taps, segments, order, causal):
  graph = mtf.Graph()
  mesh = mtf.Mesh(graph, "mesh")
  sizes = dict(zip(("batch", "length", "heads", "d_kv"), x.shape))
  dims = {n: mtf.Dimension(n, sizes[n]) for n in sizes}
  perm = [("batch", "length", "heads", "d_kv").index(n) for n in order]
  mx = mtf.import_tf_tensor(mesh, tf.constant(np.transpose(x, perm)),
                            mtf.Shape([dims[n] for n in order]))
  mtaps = [mtf.import_tf_tensor(mesh, tf.constant(t), mtf.Shape([dims["heads"], dims["d_kv"]]))
           for t in taps]
  mseg = None if segments is None else mtf.import_tf_tensor(
      mesh, tf.constant(segments), mtf.Shape([dims["batch"], dims["length"]]))
  y = dconv.depthwise_conv(mx, mtaps, "length", mseg, causal)
  y = mtf.transpose(y, mtf.Shape([dims[n] for n in ("batch", "length", "heads", "d_kv")]))
  impl = mtf.placement_mesh_impl.PlacementMeshImpl(mtf.Shape([]), {}, [""])
  lowering = mtf.Lowering(graph, {mesh: impl})
  with tf.Session() as sess:
    return sess.run(lowering.export_to_tf_tensor(y))


@pytest.mark.parametrize("kernel_size", [1, 2, 3, 5])
def test_matches_numpy_on_random_inputs_taps_and_segments(kernel_size):
  rng = np.random.RandomState(kernel_size)
  x = rng.randn(3, 11, 2, 4).astype(np.float32)
  taps = rng.randn(kernel_size, 2, 4).astype(np.float32)
  segments = np.sort(rng.randint(1, 4, size=(3, 11)), axis=1).astype(np.int32)
  np.testing.assert_allclose(run_mtf_dconv(x, taps, segments),
                             numpy_dconv(x, taps, segments), rtol=1e-5, atol=1e-5)


def test_without_segments_is_a_zero_padded_causal_conv():
  rng = np.random.RandomState(0)
  x = rng.randn(2, 7, 2, 3).astype(np.float32)
  taps = rng.randn(3, 2, 3).astype(np.float32)
  np.testing.assert_allclose(run_mtf_dconv(x, taps, None),
                             numpy_dconv(x, taps, np.ones((2, 7))), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("order", [("batch", "heads", "length", "d_kv"),
                                   ("d_kv", "heads", "batch", "length")])
def test_length_axis_is_chosen_by_name_not_position(order):
  rng = np.random.RandomState(1)
  x = rng.randn(2, 6, 3, 2).astype(np.float32)
  taps = rng.randn(3, 3, 2).astype(np.float32)
  segments = np.array([[1, 1, 1, 2, 2, 2], [1, 1, 1, 1, 1, 1]], np.int32)
  np.testing.assert_allclose(run_mtf_dconv(x, taps, segments, order),
                             numpy_dconv(x, taps, segments), rtol=1e-5, atol=1e-5)


def test_initial_taps_are_the_authors_constants():
  assert dconv.tap_initial_values(3) == [0.5, 0.5 / 3, 0.5 / 3]
  assert dconv.tap_initial_values(1) == [0.5]
