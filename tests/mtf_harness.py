"""Builds small decoder-only LMs from the project's gin model files, in the style of
mesh-tensorflow's transformer_layers_test: numpy in, numpy out, on a placement
mesh of virtual CPU devices. Also runs the depthwise conv alone on a mesh.
"""
import gin
import mesh_tensorflow as mtf
from mesh_tensorflow.transformer import transformer
from mesh_tensorflow.transformer import utils as mtf_utils
import numpy as np
import tensorflow.compat.v1 as tf

from primer_mtf import configs
from primer_mtf.layers import dconv

SMALL = {"num_layers": 2, "d_model": 32, "num_heads": 4, "d_kv": 8, "d_ff": 64,
         "d_ff_gated": 42}
VOCAB = 64
LAYOUT = "batch:batch,d_ff:model,heads:model,vocab:model,experts:batch"


def configure(model, extra=()):
  """Parses defaults.gin + gin/models/MODEL.gin at a small size, dropout off."""
  bindings = [f"{k} = {v}" for k, v in SMALL.items()]
  bindings += ["dropout_rate = 0.0", "Unitransformer.max_length = 64"]
  configs.parse(model, "tiny", "cpu", gin_params=bindings + list(extra))


def run_mtf_dconv(x, taps, segments, order=("batch", "length", "heads", "d_kv"),
                  causal=True):
  """Runs dconv on a mesh, with x's dimensions in the given order.

  ``x`` is [batch, length, heads, d_kv], ``taps`` [k, heads, d_kv], ``segments``
  [batch, length] or None; returns y as [batch, length, heads, d_kv].
  """
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


def _in_new_graph(method):
  """Each call builds its own tf graph (the tests otherwise run eagerly)."""
  def wrapper(*args, **kwargs):
    with tf.Graph().as_default():
      return method(*args, **kwargs)
  return wrapper


class LM:
  """One mtf graph of an LM on a mesh; sessions run forward passes and decodes."""

  def __init__(self, mesh_shape="", seed=0, random_scale=None, embedding_scale=None,
               vocab=VOCAB):
    """``random_scale``: redraw every variable (MDHA taps too) from
    N(0, random_scale^2). A freshly initialised model tends to repeat one token
    when it decodes greedily, which would hide decoding bugs; a redrawn one does not.
    """
    self.mesh_shape = mtf.convert_to_shape(mesh_shape)
    self.layout = mtf.convert_to_layout_rules(LAYOUT)
    self.seed = seed
    self.random_scale = random_scale
    self.embedding_scale = embedding_scale or random_scale
    self.vocab = vocab

  model_type = "lm"

  def _model(self):
    return mtf_utils.build_model(self.model_type, self.vocab, self.vocab,
                                 self.layout, self.mesh_shape)

  def _setup(self, batch, length):
    tf.set_random_seed(self.seed)
    graph = mtf.Graph()
    mesh = mtf.Mesh(graph, "mesh")
    self.batch_dim = mtf.Dimension("batch", batch)
    self.length_dim = mtf.Dimension("length", length)
    return graph, mesh

  def _import(self, mesh, array, name):
    placeholder = tf.placeholder(tf.int32, array.shape, name=name)
    shape = mtf.Shape([self.batch_dim, self.length_dim])
    return placeholder, mtf.import_tf_tensor(mesh, placeholder, shape)

  def _lower(self, graph, mesh, outputs):
    masters = [(v.get_master(), v.name.endswith("/embedding"))
               for v in graph.all_variables]  # before autostack
    devices = [""] * self.mesh_shape.size
    impl = mtf.placement_mesh_impl.PlacementMeshImpl(
        self.mesh_shape, self.layout, devices)
    lowering = mtf.Lowering(graph, {mesh: impl})
    tf_outputs = [lowering.export_to_tf_tensor(o) for o in outputs]
    init = [tf.global_variables_initializer()]
    if self.random_scale:
      init.append(tf.group([
          tf.assign(master, tf.random.normal(
              master.shape, seed=i,
              stddev=self.embedding_scale if embedding else self.random_scale))
          for i, (master, embedding) in enumerate(masters)]))
    init.append(lowering.copy_masters_to_slices())
    return tf_outputs, init

  def _forward(self, model, mesh, targets, segments, positions):
    inputs = transformer.autoregressive_inputs(targets, sequence_id=segments)
    return model.call_simple(
        inputs=inputs, targets=targets, compute_loss=True, mode="eval",
        variable_dtype=mtf.VariableDType(tf.float32, tf.float32, tf.float32),
        sequence_id=segments, position=positions)

  @_in_new_graph
  def forward(self, targets, segments=None, positions=None, gradient_norm=False):
    """Logits [batch, length, vocab], loss (and gradient norm) for int targets."""
    graph, mesh = self._setup(*targets.shape)
    feeds, imported = {}, {}
    for name, array in (("targets", targets), ("segments", segments),
                        ("positions", positions)):
      if array is not None:
        placeholder, imported[name] = self._import(mesh, np.asarray(array), name)
        feeds[placeholder] = array
    model = self._model()
    logits, loss = self._forward(model, mesh, imported["targets"],
                                 imported.get("segments"), imported.get("positions"))
    outputs = [logits, loss]
    if gradient_norm:
      variables = [v.outputs[0] for v in graph.trainable_variables]
      grads = mtf.gradients([loss], variables)
      outputs.append(mtf.sqrt(mtf.add_n([mtf.reduce_sum(mtf.square(g))
                                         for g in grads])))
    tf_outputs, init = self._lower(graph, mesh, outputs)
    with tf.Session() as sess:
      for op in init:  # masters first, then copy them to the slices
        sess.run(op)
      return sess.run(tf_outputs, feeds)

  @_in_new_graph
  def count_parameters(self, length=8):
    graph, mesh = self._setup(2, length)
    _, targets = self._import(mesh, np.zeros((2, length), np.int32), "targets")
    self._forward(self._model(), mesh, targets, None, None)
    return sum(v.shape.size for v in graph.trainable_variables)

  @_in_new_graph
  def per_core_variable_shapes(self, length=8):
    """Lowers the model on this mesh; the shape of one core's slice of each variable."""
    batch = max(self.mesh_shape.size, 2)
    graph, mesh = self._setup(batch, length)
    _, targets = self._import(mesh, np.zeros((batch, length), np.int32), "targets")
    logits, _ = self._forward(self._model(), mesh, targets, None, None)
    impl = mtf.placement_mesh_impl.PlacementMeshImpl(
        self.mesh_shape, self.layout, [""] * self.mesh_shape.size)
    lowering = mtf.Lowering(graph, {mesh: impl}, autostack=False)
    lowering.export_to_tf_tensor(logits)
    return [tuple(lowering.variables[v].laid_out_tensor.all_slices[0].shape.as_list())
            for v in graph.trainable_variables]

  @_in_new_graph
  def variable_names(self, length=8):
    graph, mesh = self._setup(2, length)
    _, targets = self._import(mesh, np.zeros((2, length), np.int32), "targets")
    self._forward(self._model(), mesh, targets, None, None)
    return [v.name for v in graph.trainable_variables]

  @_in_new_graph
  def initial_values(self, length=8):
    """{variable name: numpy value} of every variable as its initializer sets it.

    Builds the model and runs the graph's variable initializers; the
    ``random_scale`` redraw is not applied here.
    """
    graph, mesh = self._setup(2, length)
    _, targets = self._import(mesh, np.zeros((2, length), np.int32), "targets")
    self._forward(self._model(), mesh, targets, None, None)
    variables = graph.all_variables
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      values = sess.run([v.get_master() for v in variables])
    return {v.name: value for v, value in zip(variables, values)}

  @_in_new_graph
  def greedy_and_teacher_forced(self, prompts):
    """Greedy ids from sample_autoregressive, and the teacher-forced argmax on them.

    Both come from one graph, so they share variables. ``prompts`` is an int array
    [batch, length], zero after each prompt. Returns (ids, argmax), where argmax[t]
    is the forward pass's prediction for position t given ids[:t].
    """
    graph, mesh = self._setup(*prompts.shape)
    prompt_ph, partial = self._import(mesh, prompts, "prompts")
    model = self._model()
    has_prompt = bool(np.any(prompts))
    decoded = model.sample_autoregressive(
        partial, temperature=0.0,
        variable_dtype=mtf.VariableDType(tf.float32, tf.float32, tf.float32),
        has_partial_sequences=has_prompt, remove_partial_sequences=False)
    ids_ph, ids = self._import(mesh, prompts, "ids")
    logits, _ = self._forward(model, mesh, ids, None, None)
    argmax = mtf.argmax(logits, model.output_vocab_dim)
    (tf_decoded, tf_argmax), init = self._lower(graph, mesh, [decoded, argmax])
    with tf.Session() as sess:
      for op in init:  # masters first, then copy them to the slices
        sess.run(op)
      out = sess.run(tf_decoded, {prompt_ph: prompts})
      return out, sess.run(tf_argmax, {ids_ph: out})


_F32 = mtf.VariableDType(tf.float32, tf.float32, tf.float32)


class EncDec(LM):
  """The same harness for T5 bitransformers (encoder-decoder)."""

  model_type = "bitransformer"

  def _forward(self, model, mesh, targets, segments, positions):
    del mesh, segments, positions  # encoder reads the targets too: shapes only
    return model.call_simple(targets, targets, compute_loss=True, mode="eval",
                             variable_dtype=_F32)

  @_in_new_graph
  def forward(self, inputs, targets):
    """Decoder logits [batch, length, vocab] for int inputs and targets."""
    graph, mesh = self._setup(*targets.shape)
    in_ph, m_inputs = self._import(mesh, inputs, "inputs")
    tg_ph, m_targets = self._import(mesh, targets, "targets")
    logits, _ = self._model().call_simple(m_inputs, m_targets, compute_loss=True,
                                          mode="eval", variable_dtype=_F32)
    (tf_logits,), init = self._lower(graph, mesh, [logits])
    with tf.Session() as sess:
      for op in init:
        sess.run(op)
      return sess.run(tf_logits, {in_ph: inputs, tg_ph: targets})

  @_in_new_graph
  def greedy_and_teacher_forced(self, inputs):
    """Greedy decode of the decoder given ``inputs``; teacher-forced argmax on it."""
    graph, mesh = self._setup(*inputs.shape)
    in_ph, m_inputs = self._import(mesh, inputs, "inputs")
    model = self._model()
    decoded = model.decode(m_inputs, variable_dtype=_F32, temperature=0.0)
    ids_ph, ids = self._import(mesh, inputs, "ids")
    logits, _ = model.call_simple(m_inputs, ids, compute_loss=True, mode="eval",
                                  variable_dtype=_F32)
    argmax = mtf.argmax(logits, model.output_vocab_dim)
    (tf_decoded, tf_argmax), init = self._lower(graph, mesh, [decoded, argmax])
    with tf.Session() as sess:
      for op in init:
        sess.run(op)
      out = sess.run(tf_decoded, {in_ph: inputs})
      return out, sess.run(tf_argmax, {in_ph: inputs, ids_ph: out})
