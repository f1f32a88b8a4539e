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
"""

import math

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


class NonFiniteLossHook(tf.train.SessionRunHook):
  """Stops the run at the first step whose loss is NaN or infinite."""

  def __init__(self, model_dir):
    self._model_dir = model_dir

  def begin(self):
    self._loss = tf.get_collection(tf.GraphKeys.LOSSES)[0]
    self._step = tf.train.get_global_step()

  def before_run(self, run_context):
    del run_context
    return tf.train.SessionRunArgs(self._loss)

  def after_run(self, run_context, run_values):
    loss = float(run_values.results)
    if not math.isfinite(loss):
      _stop(f"the loss is {loss}", int(run_context.session.run(self._step)),
            self._model_dir)


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
