"""The divergence guard: a run whose loss or weights stop being finite stops, and
the bad state is never saved over the last good checkpoint.

Two checks, both cheap:
  * after every step, the loss (already fetched for progress) must be finite;
  * before every checkpoint, every trainable variable must be finite (a step can
    turn the weights to inf while its own loss, computed before the update, was
    still finite; this catches it before the saver writes them).
Either stops training with :class:`Diverged`, one line naming the step and the
newest checkpoint, which is then the last good one: restart from it with a lower
learning rate (or other data order) and the run resumes there.

Or, bound by gin from a run's start (``--gin_file guards/skip_nonfinite_steps.gin``),
:class:`SkipNonFiniteSteps` skips a bad step and the run goes on: a step any of
whose new values (weights or optimizer slots) is not finite writes none of them.
The count of skipped steps is a variable of the checkpoints, and the progress
lines report each skip.
"""

import math
import sys

import gin
import mesh_tensorflow as mtf
import tensorflow.compat.v1 as tf

from primer_mtf.errors import UsageError


class Diverged(UsageError):
  """Training stopped on a non-finite loss or weight."""


def _stop(what, step, model_dir):
  newest = tf.train.latest_checkpoint(model_dir)
  kept = (f"its newest checkpoint, {newest.rsplit('/', 1)[-1]}, is from before it "
          "and stays the newest; lower the learning rate and train again to resume "
          "from it") if newest else "no checkpoint was written before it"
  raise Diverged(f"training diverged: {what} at step {step}; the run stopped and "
                 f"{kept}")


SKIPPED_STEPS = "skipped_steps"


def _not_finite(x):
  return mtf.cwise(lambda t: tf.cast(tf.logical_not(tf.is_finite(t)), tf.float32),
                   [mtf.to_float(x)], output_dtype=tf.float32)


def _select(ok, new, old):
  """``new`` where the scalar ``ok`` holds, else ``old``. (``mtf.where``
  multiplies by 0 and 1, which keeps a NaN.)"""
  return mtf.slicewise(lambda c, a, b: tf.where_v2(c, a, b),
                       [ok, new, mtf.cast(old, new.dtype)], output_shape=new.shape,
                       output_dtype=new.dtype, splittable_dims=new.shape.dims)


@gin.configurable(module="primer_mtf")
class SkipNonFiniteSteps(mtf.optimize.Optimizer):
  """``optimizer``, except that a step with any non-finite new value writes none.

  Bind it as mesh-tensorflow's optimizer
  (``utils.run.optimizer = @primer_mtf.SkipNonFiniteSteps``, as
  ``gin/guards/skip_nonfinite_steps.gin`` does). A NaN
  or infinite loss or gradient, or a learning rate or update that overflows, gives
  such a step: its weights and slots stay as they were, the global step still
  advances (the batch is dropped), and the ``skipped_steps`` counter grows by one.
  """

  def __init__(self, learning_rate, optimizer=mtf.optimize.AdafactorOptimizer):
    self._optimizer = optimizer(learning_rate=learning_rate)

  def apply_grads(self, grads, variables):
    updates = self._optimizer.apply_grads(grads, variables)
    if not updates:
      return updates
    news = [new for op in updates for new in op.inputs]
    bad = mtf.add_n([mtf.reduce_sum(_not_finite(new)) for new in news])
    ok = mtf.equal(bad, 0.0)
    # The inner optimizer's own assignments stay in the graph, unused: only the
    # guarded ones below are returned, so only they run.
    guarded = [mtf.Assign(op.variables,
                          [_select(ok, new, _unchanged(op.assign_fn, var, new))
                           for var, new in zip(op.variables, op.inputs)],
                          op.assign_fn) for op in updates]
    skipped = mtf.get_variable(variables[0].mesh, SKIPPED_STEPS, mtf.Shape([]),
                               initializer=tf.zeros_initializer(), trainable=False)
    count = mtf.assign(skipped, skipped + mtf.cast(mtf.logical_not(ok), tf.float32))
    return guarded + [count]


def _unchanged(assign_fn, var, new):
  """What ``assign_fn`` writes to leave ``var`` as it is: its value for an
  assignment, 0 for an increment (Adafactor subtracts its update)."""
  if assign_fn is mtf.assign_slice:
    return var.outputs[0]
  if assign_fn in (mtf.assign_add_slice, mtf.assign_sub_slice):
    return mtf.zeros_like(new)
  raise ValueError(f"SkipNonFiniteSteps cannot undo {assign_fn.__name__}")


def skips_steps():
  """Whether the parsed configuration trains with :class:`SkipNonFiniteSteps`."""
  try:
    optimizer = gin.query_parameter("utils.run.optimizer")
  except ValueError:
    return False
  return getattr(getattr(optimizer, "configurable", None), "wrapped",
                 None) is SkipNonFiniteSteps


@gin.configurable(module="primer_mtf")
def nan_learning_rate_at(step, total_train_steps, schedule=gin.REQUIRED, steps=()):
  """``schedule``'s learning rate, but NaN at ``steps`` (counted as the progress
  lines count them: the first step is 1). A drill for the divergence guard: bind
  ``utils.run.learning_rate_schedule = @primer_mtf.nan_learning_rate_at``."""
  rate = tf.cast(schedule(step=step, total_train_steps=total_train_steps),
                 tf.float32)
  hit = tf.reduce_any(tf.equal(tf.cast(step, tf.int64) + 1,
                               tf.constant(list(steps) or [-1], tf.int64)))
  return tf.where_v2(hit, tf.constant(float("nan")), rate)


def _skipped_steps_variable():
  """The lowered ``skipped_steps`` counter (a slice of it on meshes), or None when
  the run does not skip steps."""
  found = [v for v in tf.global_variables()
           if v.op.name.split("/")[-1].startswith(SKIPPED_STEPS)]
  found.sort(key=lambda v: ("slice" not in v.op.name, v.op.name))
  return found[0] if found else None


class NonFiniteLossHook(tf.train.SessionRunHook):
  """Stops the run at the first step whose loss is NaN or infinite; with
  :class:`SkipNonFiniteSteps`, reports the skipped steps instead."""

  def __init__(self, model_dir):
    self._model_dir = model_dir
    self._skipped = 0

  def begin(self):
    self._loss = tf.get_collection(tf.GraphKeys.LOSSES)[0]
    self._step = tf.train.get_global_step()
    counter = _skipped_steps_variable()
    self._counter = None if counter is None else counter.value()

  def after_create_session(self, session, coord):
    del coord
    if self._counter is not None:
      self._skipped = int(session.run(self._counter))

  def before_run(self, run_context):
    del run_context
    return tf.train.SessionRunArgs(self._loss)

  def after_run(self, run_context, run_values):
    session = run_context.session
    if self._counter is None:
      loss = float(run_values.results)
      if not math.isfinite(loss):
        _stop(f"the loss is {loss}", int(session.run(self._step)), self._model_dir)
      return
    skipped = int(session.run(self._counter))   # read once the step is over
    if skipped > self._skipped:
      sys.stderr.write(f"[train] step {int(session.run(self._step))}: skipped, a "
                       f"value it would write is not finite ({skipped} skipped so "
                       "far)\n")
      sys.stderr.flush()
    self._skipped = skipped


class FiniteWeightsBeforeSave(tf.estimator.CheckpointSaverListener):
  """Refuses to save a checkpoint whose weights are not all finite."""

  def __init__(self, model_dir):
    self._model_dir = model_dir

  def begin(self):
    weights = tf.trainable_variables()
    self._all_finite = tf.reduce_all(
        [tf.reduce_all(tf.is_finite(tf.cast(v, tf.float32))) for v in weights])

  def before_save(self, session, global_step_value):
    if not session.run(self._all_finite):
      _stop("a weight is not finite", global_step_value, self._model_dir)
