"""Primer norm against its formula in numpy."""
import mesh_tensorflow as mtf
import numpy as np
import tensorflow.compat.v1 as tf

import primer_mtf  # pylint: disable=unused-import
from primer_mtf.layers import norms


def test_primer_norm_matches_the_formula_and_layer_norm():
  rng = np.random.RandomState(0)
  x = (rng.randn(3, 5, 16) * 3 + 1).astype(np.float32)
  with tf.Graph().as_default():
    graph = mtf.Graph()
    mesh = mtf.Mesh(graph, "mesh")
    dims = [mtf.Dimension("batch", 3), mtf.Dimension("length", 5),
            mtf.Dimension("d_model", 16)]
    mx = mtf.import_tf_tensor(mesh, tf.constant(x), mtf.Shape(dims))
    y = norms.primer_norm(mx, dims[-1], epsilon=1e-6)
    impl = mtf.placement_mesh_impl.PlacementMeshImpl(mtf.Shape([]), {}, [""])
    lowering = mtf.Lowering(graph, {mesh: impl})
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      sess.run(lowering.copy_masters_to_slices())
      got = sess.run(lowering.export_to_tf_tensor(y))
  mu = x.mean(-1, keepdims=True)
  expected = (x - mu) / np.sqrt((x * (x - mu)).mean(-1, keepdims=True) + 1e-6)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
  layer_norm = (x - mu) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)
  np.testing.assert_allclose(got, layer_norm, rtol=1e-4, atol=1e-4)
