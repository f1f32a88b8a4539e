"""Training progress: step, loss, tokens per second and ETA, every few steps.

``train_with_progress`` has the signature of mesh-tensorflow's
``utils.train_model`` and is bound to ``utils.run.train_model_fn`` by the gin
objectives, so the CLI and ``t5_mesh_transformer`` both report progress. It adds a
session hook to the estimator and otherwise leaves training to mesh-tensorflow.
"""

import copy
import hashlib
import json
import os
import sys
import time

import gin
from mesh_tensorflow.transformer import utils as mtf_utils
import tensorflow.compat.v1 as tf

from primer_mtf import configs
from primer_mtf.training import checkpoints
from primer_mtf.training import divergence
from primer_mtf.training import events

TRAIN_LOG = "train_progress.jsonl"


def _format_seconds(seconds):
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}:{m:02d}:{s:02d}"


class ProgressHook(tf.train.SessionRunHook):
  """Reports ``step N/M loss L tokens/s T ETA h:mm:ss`` every ``every_n_steps``.

  The step is the global step after each run, so a TPU run of
  ``iterations_per_loop`` steps per call counts them all; a report is due when the
  step crosses a multiple of ``every_n_steps``. The first step of a session is
  always reported (its rate includes graph start-up). Each
  report also goes, as one JSON line, to ``log_path`` when given; the eval command
  plots the training curve from it.
  """

  def __init__(self, tokens_per_step, train_steps, every_n_steps=10,
               log_path=None, stream=sys.stderr):
    self._tokens_per_step = tokens_per_step
    self._train_steps = train_steps
    self._every = every_n_steps
    self._log_path = log_path
    self._stream = stream
    self._last = None  # (step, time) of the last report
    self._reported = False

  def begin(self):
    self._loss = tf.get_collection(tf.GraphKeys.LOSSES)[0]
    self._step = tf.train.get_global_step()

  def after_create_session(self, session, coord):
    del coord
    self._last = (int(session.run(self._step)), time.time())
    self._reported = False

  def before_run(self, run_context):
    del run_context
    return tf.train.SessionRunArgs(self._loss)

  def after_run(self, run_context, run_values):
    # One run is one step on CPU and GPU but iterations_per_loop steps on TPU (the
    # last loop fewer), so the step is read once the run is over, as TPUEstimator's
    # own stop hook does; fetched with the loss it could be read mid-update.
    step = int(run_context.session.run(self._step))
    last_step, last_time = self._last
    first_of_session = not self._reported
    crossed = step // self._every > last_step // self._every
    if not (first_of_session or crossed or step >= self._train_steps):
      return
    self._reported = True
    now = time.time()
    steps_per_sec = (step - last_step) / max(now - last_time, 1e-9)
    eta = (self._train_steps - step) / max(steps_per_sec, 1e-9)
    loss = float(run_values.results)
    tokens_per_sec = steps_per_sec * self._tokens_per_step
    self._stream.write(
        f"[train] step {step}/{self._train_steps} loss {loss:.4f} "
        f"tokens/s {tokens_per_sec:,.0f} ETA {_format_seconds(eta)}\n")
    self._stream.flush()
    if self._log_path and "://" not in self._log_path:  # no appends on buckets
      with open(self._log_path, "a") as f:
        f.write(json.dumps({"step": step, "loss": loss,
                            "tokens_per_sec": tokens_per_sec,
                            "time": now}) + "\n")
    self._last = (step, now)


class _EstimatorWithHooks:
  """An estimator whose ``train`` also runs extra hooks and saving listeners."""

  def __init__(self, estimator, hooks, saving_listeners=()):
    self._estimator = estimator
    self._hooks = hooks
    self._saving_listeners = list(saving_listeners)

  def __getattr__(self, name):
    return getattr(self._estimator, name)

  def train(self, input_fn, max_steps=None, hooks=None, **kwargs):
    kwargs["saving_listeners"] = (list(kwargs.get("saving_listeners") or []) +
                                  self._saving_listeners)
    return self._estimator.train(input_fn=input_fn, max_steps=max_steps,
                                 hooks=self._hooks + list(hooks or []), **kwargs)


@gin.configurable("train_with_progress", module="primer_mtf",
                  denylist=["estimator", "vocabulary", "sequence_length",
                            "batch_size", "train_dataset_fn", "train_steps",
                            "ensemble_inputs"])
def train_with_progress(estimator, vocabulary, sequence_length, batch_size,
                        train_dataset_fn, train_steps, ensemble_inputs,
                        every_n_steps=10, seed=None, **kwargs):
  """``utils.train_model`` with a :class:`ProgressHook`, the divergence guard
  (:mod:`primer_mtf.training.divergence`) and the graph in the first events file
  only (:mod:`primer_mtf.training.events`). Tokens are the padded
  positions a step reads: the targets of a decoder-only LM; the inputs and the
  targets of encoder-decoders and of delimited LMs (one sequence of both).

  ``seed`` (``train --seed``) fixes the initial weights: see
  :func:`seeded_initial_weights`. The objectives bind
  mesh-tensorflow's own ``utils.run.skip_seen_data = True``: a resumed run's
  input skips the batches of the steps already trained, so the batch at step
  k+1 after a resume from step k is the one an uninterrupted run reads there (a
  fine-tuning run sets ``utils.run.seen_data_init_step`` to its pretrained
  step)."""
  read = (["inputs", "targets"] if configs.query("utils.run.model_type") in (
      "bitransformer", "delimited_lm") else ["targets"])
  tokens_per_step = batch_size * sum(sequence_length[k] for k in read)
  hook = ProgressHook(tokens_per_step, train_steps, every_n_steps,
                      log_path=os.path.join(estimator.model_dir, TRAIN_LOG))
  guarded = _EstimatorWithHooks(
      estimator, [divergence.NonFiniteLossHook(estimator.model_dir), hook],
      [divergence.FiniteWeightsBeforeSave(estimator.model_dir)])
  if seed is not None:
    seeded_initial_weights(estimator, seed)
  newest = tf.train.latest_checkpoint(estimator.model_dir)
  seen = (checkpoints.step_of(newest) if newest else 0) - kwargs.get(
      "seen_data_init_step", 0)
  if kwargs.get("skip_seen_data") and seen > 0:
    print(f"[train] skipping the {seen:,} batches already trained on, so the run "
          "continues its data stream", file=sys.stderr, flush=True)
  with events.graph_written_once(estimator.model_dir):
    mtf_utils.train_model(guarded, vocabulary,
                          sequence_length, batch_size, train_dataset_fn,
                          train_steps, ensemble_inputs, **kwargs)


def seeded_initial_weights(estimator, seed):
  """Makes every weight's initial value a function of ``seed`` and its name.

  The estimator's graph seed alone does not do it: TF derives each op's seed
  from the number of ops built before it, which the input pipeline changes from
  run to run. So the model_fn builds its variables under a custom getter that
  gives each random initializer the op seed hash(seed, variable name). (mtf's
  ``get_estimator`` takes no seed, hence the two private attributes.)"""
  # pylint: disable=protected-access
  estimator._config = estimator.config.replace(tf_random_seed=seed)
  model_fn = estimator._model_fn

  def seeded_getter(getter, name, *args, **kwargs):
    initializer = kwargs.get("initializer")
    if getattr(initializer, "seed", 0) is None:
      initializer = copy.copy(initializer)
      digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
      initializer.seed = int.from_bytes(digest[:4], "little")
      kwargs["initializer"] = initializer
    return getter(name, *args, **kwargs)

  def seeded_model_fn(features, labels, mode, config, params):
    with tf.variable_scope(tf.get_variable_scope(), custom_getter=seeded_getter):
      return model_fn(features, labels, mode, config, params)

  estimator._model_fn = seeded_model_fn

