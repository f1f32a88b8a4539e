"""The depthwise convolution against numpy references: causal (decoders) and
centred (encoders). Small graphs of the conv alone, no model."""
import numpy as np
import pytest

import primer_mtf  # pylint: disable=unused-import
from primer_mtf.layers import dconv

from mtf_harness import run_mtf_dconv


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


def numpy_centred_dconv(x, taps):
  """y[t] = taps[0] x[t+1] + taps[1] x[t] + taps[2] x[t-1] (k=3), zero outside."""
  length = x.shape[1]
  y = np.zeros_like(x)
  for t in range(length):
    for tap, offset in zip(taps, dconv.offsets(len(taps), causal=False)):
      if 0 <= t - offset < length:
        y[:, t] += tap * x[:, t - offset]
  return y


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


@pytest.mark.parametrize("causal, reads", [(True, [-2, -1, 0]), (False, [-1, 0, 1])])
def test_which_positions_the_conv_reads(causal, reads):
  """An impulse at position 5 shows each output's receptive field."""
  x = np.zeros((1, 11, 1, 1), np.float32)
  x[0, 5] = 1.0
  taps = np.ones((3, 1, 1), np.float32)
  y = run_mtf_dconv(x, taps, None, causal=causal)
  # y[t] reads x[t + r] for r in reads, so the impulse lands at t = 5 - r
  assert sorted(np.nonzero(y[0, :, 0, 0])[0].tolist()) == sorted(5 - r for r in reads)


def test_centred_conv_matches_numpy_and_masks_segments():
  rng = np.random.RandomState(0)
  x = rng.randn(2, 9, 2, 3).astype(np.float32)
  taps = rng.randn(3, 2, 3).astype(np.float32)
  np.testing.assert_allclose(run_mtf_dconv(x, taps, None, causal=False),
                             numpy_centred_dconv(x, taps), rtol=1e-5, atol=1e-5)
  # two packed examples: positions 0-3 and 4-8 never read each other
  segments = np.array([[1] * 4 + [2] * 5] * 2, np.int32)
  y = run_mtf_dconv(x, taps, segments, causal=False)
  np.testing.assert_allclose(y[:, :4], numpy_centred_dconv(x[:, :4], taps), rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(y[:, 4:], numpy_centred_dconv(x[:, 4:], taps), rtol=1e-5,
                             atol=1e-5)


def test_centred_taps_put_one_half_on_the_current_token():
  assert dconv.tap_initial_values(3, causal=False) == [0.5 / 3, 0.5, 0.5 / 3]


def _run_forms(x, taps, segments):
  """The pack-safe conv and the release-style conv on one small mesh graph;
  [batch, length, heads, d_kv] numpy arrays in and out."""
  import mesh_tensorflow as mtf  # pylint: disable=g-import-not-at-top
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  with tf.Graph().as_default():
    graph = mtf.Graph()
    mesh = mtf.Mesh(graph, "mesh")
    dims = [mtf.Dimension(n, s) for n, s in
            zip(("batch", "length", "heads", "d_kv"), x.shape)]
    mx = mtf.import_tf_tensor(mesh, tf.constant(x), mtf.Shape(dims))
    mtaps = [mtf.import_tf_tensor(mesh, tf.constant(t), mtf.Shape(dims[2:]))
             for t in taps]
    mseg = mtf.import_tf_tensor(mesh, tf.constant(segments), mtf.Shape(dims[:2]))
    ys = [dconv.depthwise_conv(mx, mtaps, "length", mseg),
          dconv.release_style_conv(mx, mtaps, "length")]
    impl = mtf.placement_mesh_impl.PlacementMeshImpl(mtf.Shape([]), {}, [""])
    lowering = mtf.Lowering(graph, {mesh: impl})
    outputs = [lowering.export_to_tf_tensor(y) for y in ys]
    with tf.Session() as sess:
      return sess.run(outputs)


@pytest.mark.parametrize("kernel_size", [1, 3, 4])
def test_release_style_conv_equals_pack_safe_unpacked_and_leaks_when_packed(
    kernel_size):
  """The release's form: the same conv on rows of one example; on packed rows it
  differs exactly where a tap reaches back into the example before."""
  rng = np.random.RandomState(20 + kernel_size)
  x = rng.randn(3, 12, 2, 3).astype(np.float32)
  taps = rng.randn(kernel_size, 2, 3).astype(np.float32)
  # row 0 one example; rows 1 and 2 packed (boundaries at 5, and at 3 and 8)
  segments = np.array([[1] * 12, [1] * 5 + [2] * 7, [1] * 3 + [2] * 5 + [3] * 4],
                      np.int32)
  pack_safe, release = _run_forms(x, taps, segments)
  np.testing.assert_allclose(release, numpy_dconv(x, taps, np.ones_like(segments)),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(pack_safe, numpy_dconv(x, taps, segments), rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(release[0], pack_safe[0], rtol=1e-5, atol=1e-5)
  crossing = np.zeros(segments.shape, bool)   # t whose taps read another example
  for b, t in np.ndindex(*segments.shape):
    crossing[b, t] = any(t - s >= 0 and segments[b, t - s] != segments[b, t]
                         for s in range(kernel_size))
  assert crossing.sum() == (0 if kernel_size == 1 else 3 * (kernel_size - 1))
  np.testing.assert_allclose(release[~crossing], pack_safe[~crossing], rtol=1e-5,
                             atol=1e-5)
  if kernel_size > 1:
    assert np.all(np.abs(release[crossing] - pack_safe[crossing]).max(-1).max(-1)
                  > 1e-3)
