"""The training step ``primer-mtf train`` runs, built by mesh-tensorflow's own code.

``utils.run`` is called with the gin configuration as a training run calls it
(mode "train"), and the estimator it builds is kept instead of trained: its model
function (``utils.tpu_estimator_model_fn``) then builds the step on a fixed
synthetic packed batch. So the model, optimizer, learning rate schedule, mesh and
layout are whatever gin says, as in a real run; only the input pipeline is
replaced (the ``pipeline`` section times it separately).
"""
import shutil
import tempfile

import numpy as np
import tensorflow.compat.v1 as tf

from primer_mtf import configs
from primer_mtf.bench.harness import log

VOCAB_SIZE = 4096


def bindings(batch, length):
  """The gin bindings that set a step's batch and length (and no dropout)."""
  return [f"utils.run.sequence_length = {{'inputs': {length}, 'targets': {length}}}",
          f"Unitransformer.max_length = {length}",
          f"utils.run.batch_size = ('sequences_per_batch', {batch})",
          "dropout_rate = 0.0"]


def synthetic_packed_batch(batch, length, seed=0):
  """Fixed random ids in two packed examples a row (segment ids 1 and 2, positions
  restarting at the second), as T5's packing gives training."""
  rng = np.random.RandomState(seed)
  targets = rng.randint(2, VOCAB_SIZE, (batch, length)).astype(np.int32)
  cut = length * 5 // 8
  segments = np.where(np.arange(length) < cut, 1, 2)[None].repeat(batch, 0)
  positions = np.concatenate([np.arange(cut), np.arange(length - cut)])
  return targets, segments.astype(np.int32), positions[None].repeat(
      batch, 0).astype(np.int32)


def run_estimator(model_dir):
  """The estimator ``utils.run`` builds for training under the parsed gin, and
  the batch size and sequence length it settled on (nothing is trained)."""
  # pylint: disable=g-import-not-at-top
  import seqio
  from mesh_tensorflow.transformer import utils as mtf_utils
  built = {}

  def keep(estimator, vocabulary, sequence_length, batch_size, *unused, **kw):
    del vocabulary, unused, kw
    built.update(estimator=estimator, sequence_length=sequence_length,
                 batch_size=batch_size)

  # a vocabulary of the bench's size: training reads only its size
  mtf_utils.run(tpu_job_name=None, tpu=None, gcp_project=None, tpu_zone=None,
                model_dir=model_dir, mode="train",
                vocabulary=seqio.PassThroughVocabulary(VOCAB_SIZE),
                train_model_fn=keep)
  return built["estimator"], built["batch_size"], built["sequence_length"]


class TrainStep:
  """The training step ``utils.run`` builds for one configuration, in its own
  graph and session, on a fixed synthetic packed batch."""

  def __init__(self, model, size, mesh, batch, length, gin_params=()):
    from mesh_tensorflow import ops as mtf_ops  # pylint: disable=g-import-not-at-top
    self.model, self.size, self.mesh = model, size, mesh
    self.gin_params = bindings(batch, length) + list(gin_params)
    configs.parse(model, size, mesh, gin_params=self.gin_params)
    self.model_dir = tempfile.mkdtemp(prefix="primer_mtf_bench_")
    estimator, self.batch, lengths = run_estimator(self.model_dir)
    self.length = lengths["targets"]
    self.graph = tf.Graph()
    with self.graph.as_default():
      tf.set_random_seed(0)
      tf.train.get_or_create_global_step()
      targets, segments, positions = synthetic_packed_batch(self.batch, self.length)
      features = {"targets": tf.constant(targets),
                  "targets_segmentation": tf.constant(segments),
                  "targets_position": tf.constant(positions)}
      spec = estimator.model_fn(features, None, tf.estimator.ModeKeys.TRAIN,
                                estimator.config)
      self.train_op, self.loss = spec.train_op, spec.loss
      # the hook that copies the master variables onto the mesh's slices, as
      # training's session does when it starts
      restore, = [h for h in spec.training_chief_hooks
                  if isinstance(h, mtf_ops.MtfRestoreHook)]
      restore.begin()
      # the mtf graph the step was lowered from (the profile names ops by it);
      # mesh-tensorflow keeps the lowering only on this hook
      self.mtf_graph = restore._lowering.graph  # pylint: disable=protected-access
      init = tf.global_variables_initializer()
    self.session = tf.Session(graph=self.graph)
    self.session.run(init)
    restore.after_create_session(self.session, None)
    self.losses = []

  def __call__(self, steps=1):
    for _ in range(steps):
      _, loss = self.session.run([self.train_op, self.loss])
      self.losses.append(float(loss))

  @property
  def tokens(self):
    return self.batch * self.length

  def finite(self):
    """Whether every step run so far had a finite loss."""
    return bool(self.losses) and all(np.isfinite(self.losses))

  def profile(self):
    """Seconds by TensorFlow op type in one traced step (the step's breakdown:
    each op's own elapsed time, summed by type; parallel ops overlap)."""
    options = tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE)
    meta = tf.RunMetadata()
    self.session.run(self.train_op, options=options, run_metadata=meta)
    by_type = {}
    for dev in meta.step_stats.dev_stats:
      for node in dev.node_stats:
        try:
          kind = self.graph.get_operation_by_name(node.node_name).type
        except (KeyError, ValueError):
          continue
        by_type[kind] = by_type.get(kind, 0.0) + node.all_end_rel_micros * 1e-6
    return by_type

  def close(self):
    self.session.close()
    shutil.rmtree(self.model_dir, ignore_errors=True)


class Steps:
  """TrainSteps built once each, by (model, size, mesh, batch, length, bindings)."""

  def __init__(self):
    self._cache = {}

  def get(self, model, size, batch, length, mesh="cpu", gin_params=()):
    key = (model, size, mesh, batch, length, tuple(gin_params))
    if key not in self._cache:
      log(f"building the training step of {model} at {size} on {mesh}, "
          f"batch {batch} x {length}" + (f", {'; '.join(gin_params)}"
                                         if gin_params else ""))
      self._cache[key] = TrainStep(model, size, mesh, batch, length, gin_params)
    return self._cache[key]

  def close(self):
    for s in self._cache.values():
      s.close()
    self._cache = {}
