"""The mtf graph a run would build, for counting and layout checks: no lowering, no values.

The parsed gin configuration builds its model exactly as ``utils.run`` would
(``utils.build_model`` and one forward pass with the loss) into a throwaway graph.
Nothing is lowered and no session runs. mtf would also create a TensorFlow master
variable for each of its variables, which is most of the time it takes to build;
a custom getter gives it only the name it reads instead, so even the 32B model
builds in about a second. Whatever layers the gin files name, their variables,
tensors and matmuls are then here to count: a new layer needs no planner edit.
"""

import dataclasses
import math

import mesh_tensorflow as mtf
from mesh_tensorflow.transformer import transformer
from mesh_tensorflow.transformer import utils as mtf_utils
import tensorflow.compat.v1 as tf

from primer_mtf import configs
from primer_mtf.errors import UsageError

_F32 = mtf.VariableDType(tf.float32, tf.float32, tf.float32)


@dataclasses.dataclass
class _NamedOnly:
  """Stands in for a TF master variable: mtf.Variable reads only its name."""
  name: str


def _name_only_getter(getter, name, *args, **kwargs):
  del getter, args, kwargs
  return _NamedOnly(f"{name}:0")


@dataclasses.dataclass
class ModelGraph:
  """A built model: its mtf graph, the model object and the batch it was built for."""
  graph: mtf.Graph
  model: object          # transformer.Unitransformer or Bitransformer
  batch: int
  length: int

  @property
  def variables(self):
    """The trainable variables, in creation order."""
    return self.graph.trainable_variables

  def parameters(self):
    return sum(v.shape.size for v in self.variables)

  def dimensions(self):
    """Every (name, size) of a dimension of any tensor or variable in the graph."""
    found = set()
    for op in self.graph.operations:
      for t in op.outputs:
        found.update((d.name, d.size) for d in t.shape.dims)
    return found

  def active_parameters(self):
    """The parameters one token uses: of a mixture of experts' weights (variables
    with an ``experts`` dimension), one expert's share; the router is dense."""
    return sum(v.shape.size // _experts(v.shape) for v in self.variables)

  def forward_matmul_flops(self):
    """FLOPs of the forward pass's contractions (einsums that reduce a dimension).

    Each costs 2 x the product of all its dimensions. Left out, as the paper's
    6N-style counts leave them out: elementwise products (mtf writes them as
    einsums that reduce nothing: norms, the convolution's taps) and lookups (mtf
    gathers embeddings and relative-position buckets as one-hot einsums).

    A mixture of experts is counted by its active parameters: an expert's
    matmul (an einsum whose inputs all carry the experts dimension) costs
    2 x one expert's weights for each token, as if every token passed through one
    expert; the router is an ordinary matmul; dispatching tokens to experts and
    combining them back (einsums with an experts dimension and no weight) are
    routing, like the lookups, and not counted.
    """
    tokens = self.batch * self.length
    flops = 0
    for op in self.graph.operations:
      if not isinstance(op, mtf.EinsumOperation) or any(
          isinstance(t.operation, mtf.OneHotOperation) for t in op.inputs):
        continue
      dims = set()
      for t in op.inputs:
        dims.update(t.shape.dims)
      if not dims - set(op.outputs[0].shape.dims):
        continue
      if not any(d.name in EXPERT_DIMS for d in dims):
        flops += 2 * mtf.Shape(sorted(dims, key=lambda d: d.name)).size
        continue
      weights = [v for v in map(_source_variable, op.inputs) if v is not None]
      if not weights:
        continue   # routing
      if all(any(d.name in EXPERT_DIMS for d in t.shape.dims) for t in op.inputs):
        weight = weights[0].shape
        flops += 2 * tokens * weight.size // _experts(weight)
      else:
        flops += 2 * mtf.Shape(sorted(dims, key=lambda d: d.name)).size   # router
    return flops


# mesh-tensorflow's MoE layers name the experts dimension so: "experts" where it
# is split over the mesh (the experts' weights and their matmuls), "expert_unsplit"
# where it is not (the router's output, dispatching and combining).
EXPERT_DIMS = ("experts", "expert_unsplit")


def _experts(shape):
  """The number of experts a variable of ``shape`` holds (1 for a dense one)."""
  return math.prod(d.size for d in shape.dims if d.name == "experts")


def _source_variable(tensor):
  """The mtf variable ``tensor`` reads, through casts; None if it is no weight."""
  for _ in range(4):
    op = tensor.operation
    if isinstance(op, mtf.Variable):
      return op
    if len(op.inputs) != 1 or op.inputs[0].shape != tensor.shape:
      return None
    tensor = op.inputs[0]
  return None


def build(vocab_size, batch=None, length=None):
  """Builds the parsed gin configuration's model at its batch and target length.

  ``vocab_size`` is the vocabulary before mtf pads it to a multiple of 128.
  """
  model_type = configs.query("utils.run.model_type", "bitransformer")
  if model_type not in ("lm", "delimited_lm", "bitransformer"):
    raise UsageError(f"planning covers model_type 'lm', 'delimited_lm' and "
                     f"'bitransformer', not {model_type!r}")
  check_sizes()
  batch = batch or configs.batch_sequences()
  length = length or configs.sequence_length()["targets"]
  try:
    return _build(model_type, vocab_size, batch, length)
  except ZeroDivisionError:   # a size this check does not know, bound to 0
    raise UsageError("a size of the model is 0 (mesh-tensorflow divided by it "
                     "building the model); check the sizes bound in the gin "
                     "files and --gin_param") from None


# The sizes that gin/sizes/ binds as macros; each must be at least 1. mtf divides
# by d_model, num_heads and d_kv while it builds the model (a ZeroDivisionError),
# a negative size fails deep in the graph, and num_layers = 0 trains a model of
# embeddings alone.
SIZE_MACROS = ("num_layers", "d_model", "num_heads", "d_kv", "d_ff", "d_ff_gated")


def check_sizes():
  """Fails with one line where a size macro of the parsed configuration is < 1."""
  for name in SIZE_MACROS:
    value = configs.query(f"%{name}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      continue
    if value < 1:
      raise UsageError(f"{name} = {value}: a model's sizes must be at least 1; "
                       f"bind {name} to a positive number")


def _build(model_type, vocab_size, batch, length):
  with tf.Graph().as_default():
    graph = mtf.Graph()
    mesh = mtf.Mesh(graph, "planning_mesh")
    shape = mtf.Shape([mtf.Dimension("batch", batch), mtf.Dimension("length", length)])
    ids = mtf.zeros(mesh, shape, tf.int32)
    model = mtf_utils.build_model(model_type, vocab_size, vocab_size,
                                  configs.layout_rules(), configs.mesh_shape())
    inputs = transformer.autoregressive_inputs(ids) if model_type != "bitransformer" else ids
    # T5's training batches are packed, so they carry segment ids (one example a
    # row here); mesh-tensorflow's MoE reads them to mask padding in training.
    extra = {} if model_type == "bitransformer" else {
        "sequence_id": mtf.ones(mesh, shape, tf.int32)}
    with tf.variable_scope(tf.get_variable_scope(), custom_getter=_name_only_getter):
      model.call_simple(inputs=inputs, targets=ids, compute_loss=True,
                        variable_dtype=_F32, **extra)
  built = ModelGraph(graph, model, batch, length)
  empty = sorted((n, s) for n, s in built.dimensions() if s < 1)
  if empty:
    raise UsageError(f"the model has a dimension {empty[0][0]} of size "
                     f"{empty[0][1]}; check the sizes bound in the gin files and "
                     "--gin_param")
  return built


def layout_errors(dimensions, mesh_shape, rules):
  """One message for each (name, size) that its layout rule cannot split evenly."""
  errors = []
  for name, size in sorted(dimensions):
    axis = rules.tensor_dimension_to_mesh_axis(mtf.Dimension(name, size), mesh_shape)
    if axis is not None and size % mesh_shape.dims[axis].size:
      m = mesh_shape.dims[axis]
      errors.append(f"{name}={size} does not divide over mesh dimension "
                    f"{m.name}:{m.size}; choose a mesh whose {m.name} size divides "
                    f"{size}, or change the size")
  return errors


def check_layout(vocab_size):
  """Fails with one line where a sharded dimension of the run's model does not divide."""
  errors = layout_errors(build(vocab_size).dimensions(), configs.mesh_shape(),
                         configs.layout_rules())
  if errors:
    raise UsageError(errors[0])
