"""Training progress: step, loss, tokens per second and ETA, every few steps.

``train_with_progress`` has the signature of mesh-tensorflow's
``utils.train_model`` and is bound to ``utils.run.train_model_fn`` by the gin
objectives, so the CLI and ``t5_mesh_transformer`` both report progress. It adds a
session hook to the estimator and otherwise leaves training to mesh-tensorflow.

What it prints, on stderr: a line as the graph starts to build (naming the model,
size and corpus the user chose), a line once the session is up (graph built,
weights initialised or restored, the first checkpoint written), the first step
(its time includes start-up, so it carries no rate), then every ``every_n_steps``
steps the loss, tokens/s and an ETA. Tokens/s leaves out the time spent saving
checkpoints (:class:`SaveTimer`); the ETA is the steps left at a moving rate (the
last few reports) plus the saves still to come at their measured duration.

Ctrl-C during training (:class:`StopOnInterrupt`) stops after the current step:
the checkpoint of that step is saved as training ends, then ``KeyboardInterrupt``
is raised for the caller to report. A second Ctrl-C stops at once.
"""

import collections
import copy
import hashlib
import json
import math
import os
import signal
import sys
import threading
import time

import gin
from mesh_tensorflow.transformer import utils as mtf_utils
import tensorflow.compat.v1 as tf

from primer_mtf import configs
from primer_mtf.training import checkpoints
from primer_mtf.training import divergence
from primer_mtf.training import events

TRAIN_LOG = "train_progress.jsonl"
RUN_RECORD = "primer_mtf_run.json"   # commands.run.RUN_RECORD (read only here)
# reports the moving rate of the ETA is taken over
RATE_WINDOW = 5


def _format_seconds(seconds):
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}:{m:02d}:{s:02d}"


class SaveTimer(tf.estimator.CheckpointSaverListener):
  """Times each checkpoint save (a listener of ``CheckpointSaverHook``): the
  seconds spent saving so far and how many saves, so the progress hook keeps
  them out of tokens/s and counts them into the ETA. Put it first among the
  listeners: its span then covers the others' checks too."""

  def __init__(self):
    self.seconds = 0.0
    self.saves = 0
    self._started = None

  def before_save(self, session, global_step_value):
    del session, global_step_value
    self._started = time.time()

  def after_save(self, session, global_step_value):
    del session, global_step_value
    if self._started is not None:
      self.seconds += time.time() - self._started
      self.saves += 1
      self._started = None

  def mean_seconds(self):
    return self.seconds / self.saves if self.saves else 0.0


class ProgressHook(tf.train.SessionRunHook):
  """Reports ``step N/M loss L tokens/s T ETA h:mm:ss`` every ``every_n_steps``.

  The step is the global step after each run, so a TPU run of
  ``iterations_per_loop`` steps per call counts them all; a report is due when the
  step crosses a multiple of ``every_n_steps``. The first step of a session is
  always reported, without a rate or ETA: its time includes start-up. A rate is
  the steps since the last report over the time since then, less the time
  ``save_timer`` saw spent in checkpoint saves; the ETA is the steps left at the
  rate of the last :data:`RATE_WINDOW` reports, plus the saves left (one each
  ``save_every`` steps) at their mean measured duration. Each report also goes,
  as one JSON line, to ``log_path`` when given; the eval command plots the
  training curve from it.

  ``request_stop()`` (Ctrl-C, see :class:`StopOnInterrupt`) ends training after
  the current step, which is reported.
  """

  def __init__(self, tokens_per_step, train_steps, every_n_steps=10,
               log_path=None, stream=sys.stderr, save_timer=None, save_every=None):
    self._tokens_per_step = tokens_per_step
    self._train_steps = train_steps
    self._every = every_n_steps
    self._log_path = log_path
    self._stream = stream
    self._save_timer = save_timer or SaveTimer()
    self._save_every = save_every
    self._last = None  # (step, time, save seconds) of the last report
    self._reported = False
    self._rates = collections.deque(maxlen=RATE_WINDOW)   # (steps, seconds)
    self._created = time.time()
    self.in_session = False
    self.stop_requested = False
    self.last_step = None

  def request_stop(self):
    self.stop_requested = True

  def _write(self, line):
    self._stream.write(line + "\n")
    self._stream.flush()

  def begin(self):
    self._loss = tf.get_collection(tf.GraphKeys.LOSSES)[0]
    self._step = tf.train.get_global_step()

  def after_create_session(self, session, coord):
    del coord
    step = int(session.run(self._step))
    now = time.time()
    self._last = (step, now, self._save_timer.seconds)
    self._reported = False
    self._rates.clear()
    self.in_session = True
    self.last_step = step
    self._write(f"[train] graph built and session started in "
                f"{now - self._created:.0f} s; training from step {step} to "
                f"{self._train_steps}")

  def end(self, session):
    del session
    self.in_session = False

  def before_run(self, run_context):
    del run_context
    return tf.train.SessionRunArgs(self._loss)

  def _eta(self, step):
    """Seconds left: the steps at the moving rate, plus the saves to come."""
    steps = sum(s for s, _ in self._rates)
    seconds = sum(t for _, t in self._rates)
    left = self._train_steps - step
    eta = left * seconds / max(steps, 1)
    if self._save_every and left > 0:
      eta += math.ceil(left / self._save_every) * self._save_timer.mean_seconds()
    return eta

  def after_run(self, run_context, run_values):
    # One run is one step on CPU and GPU but iterations_per_loop steps on TPU (the
    # last loop fewer), so the step is read once the run is over, as TPUEstimator's
    # own stop hook does; fetched with the loss it could be read mid-update.
    step = int(run_context.session.run(self._step))
    self.last_step = step
    last_step, last_time, last_saving = self._last
    first_of_session = not self._reported
    crossed = step // self._every > last_step // self._every
    if self.stop_requested:
      run_context.request_stop()
    elif not (first_of_session or crossed or step >= self._train_steps):
      return
    self._reported = True
    now = time.time()
    saving = self._save_timer.seconds
    # time spent in checkpoint saves since the last report is not training
    seconds = max(now - last_time - (saving - last_saving), 1e-9)
    steps_per_sec = (step - last_step) / seconds
    loss = float(run_values.results)
    tokens_per_sec = steps_per_sec * self._tokens_per_step
    line = f"[train] step {step}/{self._train_steps} loss {loss:.4f} "
    if first_of_session:
      line += (f"(first step: {seconds:.1f} s with start-up; tokens/s and ETA "
               "from the next report)")
    else:
      self._rates.append((step - last_step, seconds))
      line += (f"tokens/s {tokens_per_sec:,.0f} "
               f"ETA {_format_seconds(self._eta(step))}")
    if self.stop_requested:
      line += "; stopping here (Ctrl-C)"
    self._write(line)
    if self._log_path and "://" not in self._log_path:  # no appends on buckets
      with open(self._log_path, "a") as f:
        f.write(json.dumps({"step": step, "loss": loss,
                            "tokens_per_sec": tokens_per_sec,
                            "time": now}) + "\n")
    self._last = (step, now, saving)


class StopOnInterrupt:
  """Within it, Ctrl-C (SIGINT) asks ``hook`` to stop after the current step.

  Training then ends as at its last step: ``CheckpointSaverHook.end`` saves the
  checkpoint of the step reached. ``interrupted`` says whether it happened; the
  caller raises ``KeyboardInterrupt`` after training returns. Before the session
  is up (the graph still building) Ctrl-C interrupts at once, as does a second
  Ctrl-C. The previous handler is put back on exit. Outside the main thread
  (where no handler can be installed) it does nothing."""

  def __init__(self, hook, stream=sys.stderr):
    self._hook = hook
    self._stream = stream
    self._previous = None
    self._installed = False
    self.interrupted = False

  def _handle(self, signum, frame):
    del signum, frame
    if not self._hook.in_session or self.interrupted:
      raise KeyboardInterrupt
    self.interrupted = True
    self._hook.request_stop()
    self._stream.write("[train] Ctrl-C: stopping after the current step and saving "
                       "its checkpoint (Ctrl-C again stops at once, without it)\n")
    self._stream.flush()

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.getsignal(signal.SIGINT)
      signal.signal(signal.SIGINT, self._handle)
      self._installed = True
    return self

  def __exit__(self, *exc):
    if self._installed:
      signal.signal(signal.SIGINT, self._previous if self._previous is not None
                    else signal.default_int_handler)
      self._installed = False
    return False


def describe_run(model_dir, vocabulary=None):
  """What the user chose, for the line as the graph builds: ``primer_ez tiny
  (corpus kjv, 4,096-piece vocabulary)`` from the run's record; a fine-tuning
  run names its pretrained run and task; a run with no record (T5's binary) its
  configured model type and task."""
  record = None
  path = os.path.join(model_dir, RUN_RECORD)
  try:
    if tf.io.gfile.exists(path):
      with tf.io.gfile.GFile(path) as f:
        record = json.load(f)
  except (ValueError, tf.errors.OpError):
    record = None
  pieces = getattr(vocabulary, "vocab_size", None)
  if isinstance(record, dict) and record.get("model"):    # pretraining
    pieces = record.get("vocab_size") or pieces
    size = f"{pieces:,}-piece vocabulary" if pieces else "its vocabulary"
    return (f"{record['model']} {record.get('size', '')}".strip() +
            f" (corpus {record.get('corpus')}, {size})")
  if isinstance(record, dict) and record.get("pretrained_dir"):   # fine-tuning
    fmt = record.get("format") or "default"
    return (f"{os.path.basename(os.path.normpath(record['pretrained_dir']))} "
            f"(step {record.get('pretrained_step')}) fine-tuned on "
            f"{record.get('task')} ({fmt} format)")
  task = configs.query("mesh_train_dataset_fn.mixture_or_task_name")
  task = getattr(getattr(task, "configurable", None), "name", task)
  model_type = configs.query("utils.run.model_type", "lm")
  return f"a {model_type} model (task {task})"


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
  print(f"[train] building the graph of {describe_run(estimator.model_dir, vocabulary)}"
        f"; the first step follows once it is built", file=sys.stderr, flush=True)
  save_timer = SaveTimer()
  save_every = configs.query("utils.run.save_checkpoints_steps")
  hook = ProgressHook(tokens_per_step, train_steps, every_n_steps,
                      log_path=os.path.join(estimator.model_dir, TRAIN_LOG),
                      save_timer=save_timer,
                      save_every=save_every if isinstance(save_every, int) else None)
  guarded = _EstimatorWithHooks(
      estimator, [divergence.NonFiniteLossHook(estimator.model_dir), hook],
      [save_timer, divergence.FiniteWeightsBeforeSave(estimator.model_dir)])
  if seed is not None:
    seeded_initial_weights(estimator, seed)
  newest = tf.train.latest_checkpoint(estimator.model_dir)
  seen = (checkpoints.step_of(newest) if newest else 0) - kwargs.get(
      "seen_data_init_step", 0)
  if kwargs.get("skip_seen_data") and seen > 0:
    print(f"[train] skipping the {seen:,} batches already trained on, so the run "
          "continues its data stream", file=sys.stderr, flush=True)
  with events.graph_written_once(estimator.model_dir), \
      StopOnInterrupt(hook) as interrupt:
    mtf_utils.train_model(guarded, vocabulary,
                          sequence_length, batch_size, train_dataset_fn,
                          train_steps, ensemble_inputs, **kwargs)
  saved = tf.train.latest_checkpoint(estimator.model_dir)
  saved = os.path.basename(saved) if saved else "no checkpoint"
  if interrupt.interrupted:
    raise KeyboardInterrupt(
        f"training stopped at step {hook.last_step} by Ctrl-C; {saved} is saved, "
        "and the same command resumes from it")
  print(f"[train] finished at step {hook.last_step} of {train_steps}; newest "
        f"checkpoint {saved}", file=sys.stderr, flush=True)


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

