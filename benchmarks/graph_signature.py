"""A signature of a model's lowered training graph, to show that a change left
the computation alone: the op types with their output shapes (as a multiset) and
the einsum equations, hashed. Run it on two checkouts and compare the lines.

    echo transformer | PYTHONPATH=CHECKOUT .venv/bin/python benchmarks/graph_signature.py

Prints: model, number of ops, hash of (op type, output shapes), hash of einsums.
Binding ``primer_mtf.heads_major_attention.enabled = False`` (extra lines on stdin
are gin bindings) changes both hashes: the control that the signature sees the
attention layout.
"""
import collections
import hashlib
import sys

sys.modules.pop("primer_mtf_compat", None)   # the checkout's own, not the venv's
sys.argv = sys.argv[:1]
import primer_mtf  # pylint: disable=g-import-not-at-top,unused-import
from primer_mtf import configs  # pylint: disable=g-import-not-at-top
import mesh_tensorflow as mtf  # pylint: disable=g-import-not-at-top
from mesh_tensorflow.transformer import utils as mtf_utils  # pylint: disable=g-import-not-at-top
import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top

VOCAB, BATCH, LENGTH = 4096, 4, 64


def signature(model, bindings=()):
  configs.parse(model, "tiny", "cpu", gin_params=[f"corpus_task.vocab_size = {VOCAB}",
                                                  *bindings])
  with tf.Graph().as_default() as g:
    graph = mtf.Graph()
    mesh = mtf.Mesh(graph, "m")
    shape = mtf.Shape([mtf.Dimension("batch", BATCH), mtf.Dimension("length", LENGTH)])
    ids = mtf.import_fully_replicated(mesh, tf.zeros([BATCH, LENGTH], tf.int32), shape,
                                      "ids")
    lm = mtf_utils.build_model(model_type="lm", input_vocab_size=VOCAB,
                               output_vocab_size=VOCAB,
                               layout_rules=configs.layout_rules(),
                               mesh_shape=configs.mesh_shape())
    _, loss = lm.call_simple(inputs=ids, targets=ids, compute_loss=True)
    mtf.gradients([loss], [v.outputs[0] for v in graph.trainable_variables])
    impl = mtf.placement_mesh_impl.PlacementMeshImpl(configs.mesh_shape(),
                                                     configs.layout_rules(), [""])
    mtf.Lowering(graph, {mesh: impl}).export_to_tf_tensor(loss)
    ops = collections.Counter((op.type, tuple(str(o.shape) for o in op.outputs))
                              for op in g.get_operations())
    einsums = sorted(op.get_attr("equation").decode() for op in g.get_operations()
                     if op.type == "Einsum")
  return f"{model} {sum(ops.values())} {_digest(sorted(ops.items()))} {_digest(einsums)}"


def _digest(value):
  return hashlib.sha256(repr(value).encode()).hexdigest()[:16]


if __name__ == "__main__":
  lines = [l.strip() for l in sys.stdin if l.strip()]
  print(signature(lines[0], lines[1:]))
