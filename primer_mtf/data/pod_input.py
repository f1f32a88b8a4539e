"""The training input as a pod's TPU host runs it, and the ops it needs there.

On a multi-host slice TPUEstimator calls the input function once, in BROADCAST
mode, and places its ``tf.data`` graph on worker 0's TPU runtime server, which
knows only core TensorFlow's ops. :func:`op_types` builds that graph the way
mesh-tensorflow's ``utils.train_model`` does (the gin-bound train dataset
function, repeated, batched, prefetched) and lists every op type in it,
including the ops inside the dataset's functions; :func:`foreign_ops` names
those that core TensorFlow does not register.
"""

import tensorflow.compat.v1 as tf
from tensorflow.python.framework import op_def_registry

from primer_mtf import configs

# What tensorflow_text's SentencePiece ops are called in a graph.
SENTENCEPIECE_OPS = ("SentencepieceOp", "SentencepieceTokenizeOp",
                     "SentencepieceDetokenizeOp", "SentencepieceIdToStringOp")


def train_input_graph():
  """The GraphDef of the configured run's training input function (gin must be
  parsed); nothing is run."""
  import gin  # pylint: disable=g-import-not-at-top
  dataset_fn = gin.query_parameter("utils.run.train_dataset_fn").scoped_configurable_fn
  batch = configs.batch_sequences()
  graph = tf.Graph()
  with graph.as_default():
    dataset = dataset_fn(sequence_length=configs.sequence_length(), vocabulary=None,
                         dataset_split="train")
    dataset = dataset.repeat().batch(batch, drop_remainder=True).prefetch(
        tf.data.experimental.AUTOTUNE)
    features = tf.data.make_one_shot_iterator(dataset).get_next()
  return graph.as_graph_def(), features


def op_types(graph_def):
  """Every op type of a GraphDef, its function library included."""
  ops = {node.op for node in graph_def.node}
  for function in graph_def.library.function:
    ops |= {node.op for node in function.node_def}
  return ops


def foreign_ops(ops):
  """The ops that this process's TensorFlow does not register (where
  tensorflow_text was never loaded: exactly those a TPU host lacks)."""
  return sorted(op for op in ops if op_def_registry.get(op) is None)
