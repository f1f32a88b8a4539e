"""Primer's shared Q/K representation does not depend on the order SelfAttention
asks for Q and K (K = DConv(x W_Q) is computed once, by whichever comes first)."""
import types

import mesh_tensorflow as mtf
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import primer_mtf  # pylint: disable=unused-import
from mtf_harness import LM, SMALL, configure
from primer_mtf.layers.mdha import MDHA

_F32 = mtf.VariableDType(tf.float32, tf.float32, tf.float32)


def _q_and_k(x, keys_first):
  """Q and K of one shared-Q/K MDHA layer, asking for K first or Q first."""
  with tf.Graph().as_default():
    tf.set_random_seed(0)
    graph = mtf.Graph()
    mesh = mtf.Mesh(graph, "mesh")
    batch, length, d_model = (mtf.Dimension(n, k) for n, k in
                              zip(("batch", "length", "d_model"), x.shape))
    context = types.SimpleNamespace(
        mesh=mesh, mode="train", length_dim=length, batch_dims=[batch],
        sequence_id=None, variable_dtype=_F32,
        model=types.SimpleNamespace(model_dim=d_model, ensemble_dim=None))
    layer = MDHA(share_qk_rep=True, num_heads=2, key_value_size=3)
    params = layer.make_params(context)  # every random weight is drawn here
    mx = mtf.import_tf_tensor(mesh, tf.constant(x), mtf.Shape([batch, length, d_model]))
    memory = layer.rename_length_to_memory_length(mx, context)
    if keys_first:
      k = params.compute_k(memory)
      q = params.compute_q(mx)
    else:
      q = params.compute_q(mx)
      k = params.compute_k(memory)
    assert "length" in q.shape.dimension_names
    assert "memory_length" in k.shape.dimension_names
    k = mtf.rename_dimension(k, "memory_length", "length")
    impl = mtf.placement_mesh_impl.PlacementMeshImpl(mtf.Shape([]), {}, [""])
    lowering = mtf.Lowering(graph, {mesh: impl})
    outputs = [lowering.export_to_tf_tensor(t) for t in (q, k)]
    tap_names = sorted(v.name for v in graph.trainable_variables if "_dconv_tap" in v.name)
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      sess.run(lowering.copy_masters_to_slices())
      return sess.run(outputs) + [tap_names]


def test_q_and_k_do_not_depend_on_the_order_they_are_asked_for():
  x = np.random.RandomState(0).randn(2, 5, 4).astype(np.float32)
  q1, k1, taps1 = _q_and_k(x, keys_first=False)
  q2, k2, taps2 = _q_and_k(x, keys_first=True)
  assert taps1 == taps2 and len(taps1) == 3   # one conv (K's), k = 3 taps
  np.testing.assert_allclose(q1, q2, rtol=1e-6)
  np.testing.assert_allclose(k1, k2, rtol=1e-6)
  assert np.abs(q1 - k1).max() > 1e-3   # Q = K W_s really differs from K


def test_shared_qk_initialisation_is_the_releases():
  """W_Q ~ N(0, 1/(d_model d_k)) with the 1/sqrt(d_k) folded in; W_s truncated
  normal (at 2 std) with std C^-1/2, C = heads x d_kv."""
  configure("primer")
  values = LM(seed=1).initial_values()
  d_model, d_kv = SMALL["d_model"], SMALL["d_kv"]
  channels = SMALL["num_heads"] * d_kv
  prefixes = [n[:-len("qk_share")] for n in values if n.endswith("/MDHA/qk_share")]
  assert len(prefixes) == SMALL["num_layers"]
  for prefix in prefixes:
    w_q, w_s = values[prefix + "q"], values[prefix + "qk_share"]
    assert w_q.size == d_model * channels
    assert w_s.size == channels * channels
    np.testing.assert_allclose(w_q.std(), (d_model * d_kv) ** -0.5, rtol=0.1)
    assert np.abs(w_q).max() > 2.5 * (d_model * d_kv) ** -0.5   # not truncated
    sigma = channels ** -0.5
    assert np.abs(w_s).max() <= 2 * sigma   # truncated at two standard deviations
    # a normal truncated at +-2 sigma keeps 0.880 of its standard deviation
    np.testing.assert_allclose(w_s.std(), 0.880 * sigma, rtol=0.1)
