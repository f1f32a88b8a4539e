"""The heads-major attention layout: a numpy reference, the stock order it returns,
the choice as gin makes it (in the graph and in the operative config), and whole
models that compute the same function with it on or off."""
import types

import gin
import mesh_tensorflow as mtf
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import primer_mtf  # pylint: disable=unused-import
from primer_mtf.layers import attention_layout

from mtf_harness import EncDec, LM, VOCAB, configure

pytestmark = pytest.mark.graph


def _numpy_attention(q, k, v, bias):
  """q [b, l, h, d], k and v [b, m, h, d], bias [h, l, m] -> [b, l, h, d]."""
  logits = np.einsum("blhd,bmhd->bhlm", q, k) + bias[None]
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  return np.einsum("bhlm,bmhd->blhd", weights, v)


# what attention reads of a transformer.Context: no dropout, no 2-D resharding
EVAL_CONTEXT = types.SimpleNamespace(
    train=False, model=types.SimpleNamespace(layout=None, mesh_shape=None))


def _run(q, k, v, bias, mesh_shape, layout, enabled=True, bias_by_position=False):
  """heads_major_attention on a mesh; its output's mtf shape and value."""
  with tf.Graph().as_default():
    graph = mtf.Graph()
    mesh = mtf.Mesh(graph, "mesh")
    b, l, h, d = q.shape
    dims = {n: mtf.Dimension(n, s) for n, s in (
        ("batch", b), ("length", l), ("heads", h), ("d_kv", d),
        ("memory_length", k.shape[1]))}
    shape = lambda *names: mtf.Shape([dims[n] for n in names])  # pylint: disable=unnecessary-lambda-assignment
    imp = lambda x, s: mtf.import_tf_tensor(mesh, tf.constant(x), s)  # pylint: disable=unnecessary-lambda-assignment
    args = [imp(q, shape("batch", "length", "heads", "d_kv")),
            imp(k, shape("batch", "memory_length", "heads", "d_kv")),
            imp(v, shape("batch", "memory_length", "heads", "d_kv")),
            dims["memory_length"], dims["d_kv"], dims["d_kv"]]
    mtf_bias = imp(bias, shape("heads", "length", "memory_length"))
    kwargs = {"enabled": enabled, "context": EVAL_CONTEXT}
    if bias_by_position:   # as enc_dec_attention passes it
      args.append(mtf_bias)
    else:
      kwargs["bias"] = mtf_bias
    out = attention_layout.heads_major_attention(*args, **kwargs)
    mesh_shape = mtf.convert_to_shape(mesh_shape)
    impl = mtf.placement_mesh_impl.PlacementMeshImpl(
        mesh_shape, mtf.convert_to_layout_rules(layout), [""] * mesh_shape.size)
    lowering = mtf.Lowering(graph, {mesh: impl})
    with tf.Session() as sess:
      return [d.name for d in out.shape.dims], sess.run(
          lowering.export_to_tf_tensor(out))


@pytest.mark.parametrize("mesh_shape, layout", [
    ("", ""), ("batch:2,model:2", "batch:batch,heads:model")])
def test_heads_major_attention_equals_numpy_in_the_stock_order(mesh_shape, layout):
  rng = np.random.RandomState(0)
  q, k, v = (rng.randn(2, 6, 4, 8).astype(np.float32) for _ in range(3))
  bias = rng.randn(4, 6, 6).astype(np.float32)
  names, out = _run(q, k, v, bias, mesh_shape, layout)
  assert names == ["batch", "length", "heads", "d_kv"]
  np.testing.assert_allclose(out, _numpy_attention(q, k, v, bias), rtol=1e-5,
                             atol=1e-6)
  _, stock = _run(q, k, v, bias, mesh_shape, layout, enabled=False)
  np.testing.assert_allclose(out, stock, rtol=1e-5, atol=1e-6)
  _, by_position = _run(q, k, v, bias, mesh_shape, layout, bias_by_position=True)
  np.testing.assert_allclose(by_position, out, rtol=1e-5, atol=1e-6)


def test_the_query_is_moved_to_heads_major_and_decoding_queries_are_left_alone():
  b, l, h, d, m = (mtf.Dimension(n, 2) for n in ("batch", "length", "heads", "d_kv",
                                                 "memory_length"))
  q, k = mtf.Shape([b, l, h, d]), mtf.Shape([b, m, h, d])
  order = attention_layout.heads_major_order(q, k, d)
  assert [x.name for x in order.dims] == ["batch", "heads", "length", "d_kv"]
  one_step = mtf.Shape([b, h, d])   # incremental decoding: one query position
  assert attention_layout.heads_major_order(one_step, k, d) == one_step


STOCK_LAYERS = ["transformer.make_layer_stack.layers = "
                "[@transformer_layers.SelfAttention, @transformer_layers.DenseReluDense]"]
STOCK_ORDER = ("batch", "length", "heads", "memory_length")
HEADS_MAJOR = ("batch", "heads", "length", "memory_length")


def _logits_orders(harness):
  """The dimension order of every attention's logits (Q K^T) in the model's graph,
  and the operative config once it is built."""
  # pylint: disable=protected-access
  with tf.Graph().as_default():
    graph, mesh = harness._setup(2, 8)
    _, targets = harness._import(mesh, np.zeros((2, 8), np.int32), "targets")
    harness._forward(harness._model(), mesh, targets, None, None)
  orders = [tuple(d.name for d in op.outputs[0].shape.dims) for op in graph.operations
            if isinstance(op, mtf.EinsumOperation)
            and set(op.outputs[0].shape.dimension_names) == set(HEADS_MAJOR)]
  return orders, gin.operative_config_str()


@pytest.mark.parametrize("model, harness, shown", [
    ("transformer", LM, "@primer_mtf.HeadsMajorSelfAttention"),
    ("primer", LM, "MDHA.heads_major = True"),
    ("evolved_transformer", LM, "DoubleHeadsAttention.heads_major = True"),
    ("bi/transformer", EncDec, "@primer_mtf.HeadsMajorEncDecAttention"),
])
def test_the_models_choose_heads_major_in_gin_and_the_operative_config_shows_it(
    model, harness, shown):
  configure(model)
  orders, operative = _logits_orders(harness())
  layers = {"transformer": 2, "primer": 2, "evolved_transformer": 4,
            "bi/transformer": 6}[model]   # SMALL's num_layers = 2
  assert orders == [HEADS_MAJOR] * layers
  assert shown in operative
  assert "heads_major_attention.enabled = True" in operative
  configure(model, ["primer_mtf.heads_major_attention.enabled = False"])
  assert _logits_orders(harness())[0] == [STOCK_ORDER] * layers


def test_stock_mtf_layers_named_in_gin_stay_stock():
  """Importing primer_mtf changes nothing in mesh-tensorflow: its own SelfAttention,
  named in gin, builds the stock order (and the same variables)."""
  configure("transformer", STOCK_LAYERS)
  orders, operative = _logits_orders(LM())
  assert orders == [STOCK_ORDER] * 2
  assert "HeadsMajor" not in operative
  stock_names = LM().variable_names()
  configure("transformer")
  assert LM().variable_names() == stock_names   # checkpoints fit either layout


@pytest.mark.parametrize("model, stock", [
    ("transformer", ["primer_mtf.heads_major_attention.enabled = False"]),
    ("transformer", STOCK_LAYERS),   # the baseline equals mesh-tensorflow's own
    ("primer_ez", ["primer_mtf.heads_major_attention.enabled = False"]),
    ("primer", ["MDHA.heads_major = False"]),
])
def test_models_compute_the_same_function_with_the_stock_layout(model, stock):
  targets = np.random.RandomState(3).randint(1, VOCAB, (2, 10)).astype(np.int32)
  configure(model)
  logits, loss, grad = LM("", random_scale=0.3).forward(targets, gradient_norm=True)
  configure(model, stock)
  stock_logits, stock_loss, stock_grad = LM("", random_scale=0.3).forward(
      targets, gradient_norm=True)
  np.testing.assert_allclose(logits, stock_logits, rtol=1e-4, atol=1e-5)
  assert abs(loss - stock_loss) <= 1e-5 * abs(stock_loss)
  assert abs(grad - stock_grad) <= 1e-4 * abs(stock_grad)
