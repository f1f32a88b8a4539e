"""Perplexity eval of every checkpoint of a run, written as JSON, CSV and a plot.

The evaluation itself is mesh-tensorflow's ``perplexity_eval`` mode of
``utils.run``: teacher-forced cross-entropy and token accuracy over a split. It
writes TensorBoard events; this module turns them into ``eval_<split>.json`` and
``.csv`` (step -> loss, perplexity, token accuracy) and ``loss.png``.

Which loss is which: ``loss`` here is ``-neg_log_perplexity``, the cross-entropy
summed over every target token of the examples evaluated and divided by their
count (nats per token). TensorBoard's ``loss`` tag in the eval folder is the
estimator's: the model's training loss averaged over batches, which divides by
every position of the padded batch (padding and the zeroed-out examples that fill
the last batch included), so it reads lower. The eval folder is
``eval_<task>_<split>_<N>``, N the number of examples evaluated: results over
another N are kept apart.

Each checkpoint is evaluated by its own call, so a line (stderr) reports each as
it finishes.
"""

import csv
import glob
import json
import math
import os
import sys
import time

import gin
from mesh_tensorflow.transformer import utils as mtf_utils
import seqio
import tensorflow.compat.v1 as tf
from t5.models import mesh_transformer

from primer_mtf import configs
from primer_mtf import files
from primer_mtf.errors import UsageError
from primer_mtf.training import checkpoints
from primer_mtf.training import progress

DAMAGED_SUFFIX = ".damaged"
METRICS = ("neg_log_perplexity", "token_accuracy", "num_eval_tokens")


def count_batches(task_name, sequence_length, batch_size, split, max_batches):
  """Batches needed to cover ``split`` once, at most ``max_batches``."""
  ds = seqio.get_mixture_or_task(task_name).get_dataset(
      sequence_length, split=split, shuffle=False, use_cached=False)
  n = int(ds.take(max_batches * batch_size).reduce(0, lambda c, _: c + 1))
  return max(1, math.ceil(n / batch_size))


def read_eval_events(eval_dir, prefix=None):
  """{step: {metric: value}} from the event files of one eval directory: the
  perplexity metrics, or with ``prefix`` every tag that starts with it."""
  results = {}
  for path in sorted(glob.glob(os.path.join(eval_dir, "events.out.tfevents.*"))):
    if path.endswith(DAMAGED_SUFFIX):
      continue
    read = {}
    try:
      for event in tf.train.summary_iterator(path):
        for value in event.summary.value:
          if value.tag.startswith(prefix) if prefix else value.tag in METRICS:
            read.setdefault(event.step, {})[value.tag] = value.simple_value
    except tf.errors.DataLossError:
      # cut short (a full disk, a kill): its checkpoints are evaluated again
      os.replace(path, path + DAMAGED_SUFFIX)
      print(f"[eval] {path} is cut short; moved it to {DAMAGED_SUFFIX} and "
            "evaluating its checkpoints again", file=sys.stderr)
      continue
    for step, metrics in read.items():
      results.setdefault(step, {}).update(metrics)
  return results


def rows(results):
  out = []
  for step in sorted(results):
    m = results[step]
    if "neg_log_perplexity" not in m:
      continue
    loss = -m["neg_log_perplexity"]
    out.append({"step": step, "loss": loss, "perplexity": math.exp(loss),
                "token_accuracy": m.get("token_accuracy"),
                "num_eval_tokens": m.get("num_eval_tokens")})
  return out


def write_results(model_dir, split, table):
  base = os.path.join(model_dir, f"eval_{split}")
  files.write_json(base + ".json", table)
  with files.replaced(base + ".csv") as f:
    writer = csv.DictWriter(f, fieldnames=list(table[0]) if table else ["step"])
    writer.writeheader()
    writer.writerows(table)
  return base + ".json"


def _step_plot(path, title, ylabel, draw):
  """A PNG of curves against the step: ``draw(ax)`` plots them."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7, 4.5))
  draw(ax)
  ax.set_xlabel("step")
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()
  files.save_figure(fig, path)
  plt.close(fig)
  return path


def run_label(model_dir):
  """A run's name for plots: its model and size (a pretraining run), its task
  (a fine-tuning run), with the folder's name."""
  name = os.path.basename(os.path.normpath(model_dir))
  path = os.path.join(model_dir, "primer_mtf_run.json")
  try:
    with tf.io.gfile.GFile(path) as f:
      record = json.load(f)
  except (ValueError, tf.errors.OpError):
    return name
  if not isinstance(record, dict):
    return name
  if record.get("model"):
    what = f"{record['model']} {record.get('size') or ''}".strip()
    if record.get("corpus"):
      what += f" on {record['corpus']}"
  elif record.get("task"):
    what = f"fine-tuned on {os.path.basename(str(record['task']))}"
  else:
    return name
  return f"{what} ({name})"


def _y_limits(values):
  """Limits that show the values past step 0 (the untrained loss, far above the
  rest, would squash them)."""
  values = [v for v in values if v is not None and math.isfinite(v)]
  if not values:
    return None
  low, high = min(values), max(values)
  pad = max((high - low) * 0.08, 0.05)
  return low - pad, high + pad


def plot(model_dir, split, table):
  """loss.png: training loss from the progress log and eval loss per checkpoint.
  The y axis fits the points after step 0; a step-0 point above it is noted."""
  def draw(ax):
    log = os.path.join(model_dir, progress.TRAIN_LOG)
    later = [r["loss"] for r in table if r["step"] > 0]
    if tf.io.gfile.exists(log):
      points = sorted({r["step"]: r["loss"]
                       for r in files.read_json_lines(log)}.items())
      ax.plot([p[0] for p in points], [p[1] for p in points],
              label="training loss (per batch position)", alpha=0.7)
      later += [p[1] for p in points if p[0] > 1]
    ax.plot([r["step"] for r in table], [r["loss"] for r in table], "o-",
            label=f"{split} loss (per target token)")
    limits = _y_limits(later)
    if limits:
      ax.set_ylim(*limits)
      above = [r for r in table if r["step"] == 0 and r["loss"] > limits[1]]
      if above:
        ax.annotate(f"step 0: {above[0]['loss']:.2f} (above the plot)",
                    xy=(0, limits[1]), xytext=(4, -14),
                    textcoords="offset points", fontsize=8)
  return _step_plot(os.path.join(model_dir, "loss.png"),
                    f"{run_label(model_dir)}: loss", "cross-entropy (nats/token)",
                    draw)


def plot_metrics(model_dir, table, title, majority=None):
  """metric.png: each decoded metric of a fine-tuning run against the step, as
  fractions; ``majority``: the accuracy of always answering the most common
  target of the examples evaluated, drawn as a line where the task has classes."""
  def draw(ax):
    for name in sorted({k for row in table for k in row} - {"step", "num_examples"}):
      points = [(r["step"], r[name]) for r in table if name in r]
      ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=name)
    if majority is not None:
      ax.axhline(majority, color="gray", linestyle="--",
                 label=f"majority class ({majority:.3f})")
  examples = {r.get("num_examples") for r in table} - {None}
  over = f", {examples.pop():,} validation examples" if len(examples) == 1 else ""
  label = run_label(model_dir)
  if label == os.path.basename(os.path.normpath(model_dir)):   # no record
    label += f" on {title}"
  return _step_plot(os.path.join(model_dir, "metric.png"), label + over,
                    "validation metric (fraction)", draw)


def _eval_checkpoints(model_dir, steps, split, batches):
  """mesh-tensorflow's perplexity eval of the checkpoints at ``steps``. It reads
  the checkpoints and writes events under the eval directory only."""
  with gin.unlock_config():
    mtf_utils.run(tpu_job_name=None, tpu=None, gcp_project=None, tpu_zone=None,
                  model_dir=model_dir, mode="perplexity_eval",
                  eval_dataset_fn=mesh_transformer.mesh_eval_dataset_fn,
                  eval_checkpoint_step=steps, dataset_split=split,
                  perplexity_eval_steps=batches)


def follow_checkpoints(model_dir, evaluated, evaluate_steps, follow=False,
                       poll_seconds=30.0, timeout_seconds=3600.0):
  """The loop of every eval: ``evaluate_steps(steps)`` the checkpoints whose step
  is not in ``evaluated()`` yet. With ``follow`` it then waits for the checkpoints
  training writes, ``poll_seconds`` apart, and stops once the run's last step
  (``utils.run.train_steps``) is evaluated, or fails after ``timeout_seconds``
  without a new checkpoint."""
  final_step = configs.query("utils.run.train_steps")
  done = evaluated()
  damaged = set()
  last_new = time.time()
  while True:
    todo = [s for s in checkpoints.steps(model_dir) if s not in done | damaged]
    for step in todo:
      why = checkpoints.damage(checkpoints.path(model_dir, step))
      if why:
        print(f"[eval] skipping model.ckpt-{step}: it is damaged ({why})",
              file=sys.stderr)
        damaged.add(step)
    todo = [s for s in todo if s not in damaged]
    if not todo and not done and not follow:
      raise UsageError(f"{model_dir} has no checkpoint to evaluate; train first")
    if todo:
      evaluate_steps(todo)
      done = evaluated()
      last_new = time.time()
    if not follow or final_step in done:
      return
    if time.time() - last_new > timeout_seconds:
      raise UsageError(f"no new checkpoint in {model_dir} for {timeout_seconds:.0f} s "
                       f"and step {final_step} is not evaluated yet; is training "
                       "running? (raise --timeout_seconds to wait longer)")
    time.sleep(poll_seconds)


def announce(model_dir, steps, what):
  """The line (stderr) as the evaluation of ``steps`` starts."""
  shown = ", ".join(str(s) for s in steps[:6]) + (" ..." if len(steps) > 6 else "")
  print(f"[eval] evaluating {len(steps)} checkpoint{'s' * (len(steps) != 1)} of "
        f"{model_dir} (steps {shown}) on {what}", file=sys.stderr, flush=True)


def checkpoint_done(i, n, row, seconds):
  """The line (stderr) as each checkpoint's evaluation finishes."""
  shown = " ".join(f"{k} {v:.4f}" for k, v in row.items()
                   if k not in ("step", "num_examples", "num_eval_tokens")
                   and isinstance(v, float))
  print(f"[eval] checkpoint {i}/{n} done: step {row['step']} {shown} "
        f"({seconds:.0f} s)", file=sys.stderr, flush=True)


def evaluate(model_dir, task, split="validation", max_batches=100, report=None,
             **follow):
  """Perplexity eval of the run's checkpoints on ``task`` (gin already parsed).

  A checkpoint already evaluated on the same split and number of examples (its
  events are in the same eval directory) is not evaluated again; ``follow``: see
  :func:`follow_checkpoints`. ``report(row)`` is called for each newly evaluated
  checkpoint. Returns the JSON path, the PNG path and the table of every
  evaluated checkpoint.
  """
  sequence_length = configs.sequence_length()
  batch_size = configs.batch_sequences()
  batches = count_batches(task, sequence_length, batch_size, split, max_batches)
  eval_dir = os.path.join(model_dir, f"eval_{task}_{split}_{batches * batch_size}")

  def evaluated():
    return {r["step"] for r in rows(read_eval_events(eval_dir))}

  def evaluate_steps(steps):
    announce(model_dir, steps, f"{task} {split} ({batches * batch_size:,} "
             "sequences)")
    for i, step in enumerate(steps, 1):
      started = time.time()
      _eval_checkpoints(model_dir, [step], split, batches)
      table = rows(read_eval_events(eval_dir))
      for row in table:
        if row["step"] == step:
          checkpoint_done(i, len(steps), row, time.time() - started)
          if report:
            report(row)
      write_results(model_dir, split, table)
    plot(model_dir, split, table)

  follow_checkpoints(model_dir, evaluated, evaluate_steps, **follow)
  table = rows(read_eval_events(eval_dir))
  return write_results(model_dir, split, table), plot(model_dir, split, table), table
