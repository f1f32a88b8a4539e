"""``primer-mtf score``: zero-, one- and few-shot accuracy of a checkpoint on a
task (see :mod:`primer_mtf.data.fewshot` for the tasks and the prompts).

Rank classification scores every choice by its log-likelihood after the k-shot
context through mesh-tensorflow's own scoring, ``utils.score_from_strings`` on the
run's estimator (as T5's ``MtfModel.score`` calls it): each (context, choice) pair is one sequence whose
context tokens are an unscored prefix, and the score is the sum of the choice's
token log-likelihoods. The task's normalisation then ranks the choices by that
sum (``sum``), by it divided by the choice's token count (``mean``), or by it
minus the choice's log-likelihood after the shots alone (``pmi``, which scores
every choice a second time); the accuracy of each computed normalisation is
reported. Generative tasks decode greedily, through the same
incremental decoding as ``primer-mtf sample``, as many tokens as the answer has,
and count an exact match of the text.

Nothing is written until every task has been scored: then
``score_<task>_<k>shot.json`` in the model_dir (one row per checkpoint step;
scoring a step again replaces its row) and TensorBoard scalars
``<task>/<k>shot/accuracy`` in ``score/``.
"""

import dataclasses
import json
import os
import sys
import time

from mesh_tensorflow.transformer import utils as mtf_utils
import numpy as np
import tensorflow.compat.v1 as tf

from primer_mtf import files
from primer_mtf.commands import sampling
from primer_mtf.data import fewshot
from primer_mtf.errors import DataNotPrepared
from primer_mtf.errors import UsageError

SCORE_DIR = "score"


@dataclasses.dataclass
class Prepared:
  """A task's examples with their k-shot contexts (and the shots alone, the
  context ``pmi`` compares with), checked against the model's length."""
  task: fewshot.Task
  examples: list
  contexts: list
  prefixes: list
  normalize: str


def _tokens(vocab, text):
  # as mesh-tensorflow's encode_inputs tokenizes a context and a continuation
  return len(vocab.encode(text.strip()))


def prepare(task, shots, seed, limit, normalize, vocab, length):
  """Loads a task, builds its prompts and checks that every sequence fits."""
  examples = task.load("validation")
  if limit:
    examples = examples[:limit]
  pool = task.load("train") if shots else []
  if shots and task.same_pool:
    pool = task.load("validation")   # the whole file; a query is not its own shot
  prefixes = fewshot.shot_prefixes(examples, pool, shots, seed, task.separator,
                                  task.same_pool)
  contexts = [fewshot.with_query(p, ex.context, task.separator)
              for p, ex in zip(prefixes, examples)]
  for i, (ex, context) in enumerate(zip(examples, contexts)):
    n_context = _tokens(vocab, context)
    if ex.kind == fewshot.GENERATE and n_context == 0:
      raise UsageError(f"task {task.name}: example {i + 1} has an empty context; "
                       "exact match needs a context to continue")
    ends = ex.choices if ex.kind == fewshot.RANK else (ex.answer,)
    longest = max(_tokens(vocab, e) for e in ends)
    if n_context + longest > length:
      raise UsageError(
          f"task {task.name}: the {shots}-shot prompt of example {i + 1} with its "
          f"longest {'choice' if ex.kind == fewshot.RANK else 'answer'} is "
          f"{n_context + longest} tokens; the model's length is {length}; use "
          "fewer --shots, or a model trained with longer sequences (tiny's are "
          "128 tokens; train with --size small, or bind utils.run.sequence_length)")
  normalize = normalize or task.normalize
  if normalize not in fewshot.NORMALIZATIONS:
    raise UsageError(f"--normalize {normalize!r}: choose one of "
                     f"{', '.join(fewshot.NORMALIZATIONS)}")
  return Prepared(task, examples, contexts, prefixes, normalize)


class _IdsVocabulary:
  """The run's vocabulary without ``decode_tf``, so that score mode returns its
  targets as ids. On CPU, ``utils.run``'s score mode detokenizes the targets in
  the graph whenever the vocabulary can, and SentencePiece fails on the negative
  ids that mark an unscored prefix; the failure is an OutOfRangeError, which the
  estimator takes for the end of the input, so nothing would be scored."""

  def __init__(self, vocab):
    self._vocab = vocab

  @property
  def vocab_size(self):
    return self._vocab.vocab_size

  def encode(self, s):
    return self._vocab.encode(s)

  def decode(self, ids):
    return self._vocab.decode(ids)

  def encode_tf(self, s):
    return self._vocab.encode_tf(s)


def _estimator(model_dir, vocabulary):
  """The run's estimator in scoring mode, built as ``utils.run`` builds it from
  the configured gin (the optimizer and schedule play no part in scoring)."""
  from primer_mtf import configs  # pylint: disable=g-import-not-at-top
  return mtf_utils.get_estimator(
      model_type="lm", vocabulary=vocabulary, mesh_shape=configs.mesh_shape(),
      layout_rules=configs.layout_rules(), model_dir=model_dir,
      batch_size=configs.batch_sequences(),
      sequence_length=configs.sequence_length(),
      autostack=configs.query("utils.run.autostack", True),
      learning_rate_schedule=None, keep_checkpoint_max=None,
      save_checkpoints_steps=None, optimizer=None, predict_fn=None,
      variable_filter=configs.query("utils.run.variable_filter"),
      ensemble_inputs=None, use_tpu=None, tpu_job_name=None,
      iterations_per_loop=configs.query("utils.run.iterations_per_loop", 100),
      cluster=None, mesh_devices=configs.query("utils.run.mesh_devices"),
      score_in_predict_mode=True)


# seconds between two progress lines while a task scores
PROGRESS_SECONDS = 10.0


class _CountingEstimator:
  """The estimator, whose ``predict`` reports on stderr, every
  :data:`PROGRESS_SECONDS`, how many of ``total`` sequences are scored (the first
  result comes once the graph is built and the checkpoint restored)."""

  def __init__(self, estimator, total, what, stream=None):
    self._estimator = estimator
    self._total = total
    self._what = what
    self._stream = stream or sys.stderr

  def __getattr__(self, name):
    return getattr(self._estimator, name)

  def predict(self, *args, **kwargs):
    started = last = time.time()
    done = 0
    for result in self._estimator.predict(*args, **kwargs):
      done += 1
      now = time.time()
      if now - last >= PROGRESS_SECONDS or done == 1:
        shown = min(done, self._total)
        why = " (graph built, checkpoint restored)" if done == 1 else ""
        self._stream.write(f"[score] {self._what}: {shown:,}/{self._total:,} "
                           f"sequences scored, {now - started:.0f} s{why}\n")
        self._stream.flush()
        last = now
      yield result


def log_likelihoods(run, contexts, continuations, what="scoring"):
  """Sum of each continuation's token log-likelihoods after its context, by
  mesh-tensorflow's ``score_from_strings`` on the run's checkpoint (gin
  configured); the strings are its arguments."""
  collected = []

  def keep(results, vocabulary):
    del vocabulary
    collected.extend(float(r["scores"]) for r in results)
    return collected

  from primer_mtf import configs  # pylint: disable=g-import-not-at-top
  vocabulary = _IdsVocabulary(sampling.vocabulary())
  print(f"[score] {what}: building the graph to score {len(continuations):,} "
        "sequences", file=sys.stderr, flush=True)
  mtf_utils.score_from_strings(
      _CountingEstimator(_estimator(run.model_dir, vocabulary),
                         len(continuations), what), vocabulary, "lm",
      configs.batch_sequences(), configs.sequence_length(), run.model_dir,
      run.step, inputs=list(contexts), targets=list(continuations),
      score_postprocess_fn=keep)
  if len(collected) != len(continuations):
    raise RuntimeError(f"scored {len(collected)} of {len(continuations)} sequences")
  return np.array(collected)


def rank_classification(run, prepared, vocab):
  """Accuracy of the rank-classification examples under each normalisation
  (``pmi`` only when it is the one asked for: it scores every choice twice)."""
  contexts, continuations, owner = [], [], []
  for i, (ex, context) in enumerate(zip(prepared.examples, prepared.contexts)):
    for choice in ex.choices:
      contexts.append(context)
      continuations.append(choice)
      owner.append(i)
  pairs = list(zip(contexts, continuations))
  if prepared.normalize == "pmi":
    baseline = [(prepared.prefixes[i], c) for i, c in zip(owner, continuations)]
    unique = list(dict.fromkeys(baseline))
    pairs += unique
  what = (f"{prepared.task.name} ({len(prepared.examples):,} examples, "
          f"{len(continuations):,} choices"
          + (", each also after the shots alone" if len(pairs) > len(continuations)
             else "") + ")")
  scores = log_likelihoods(run, *zip(*pairs), what=what)
  sums = scores[:len(continuations)]
  counts = np.array([_tokens(vocab, c) for c in continuations], np.float64)
  normalised = {"sum": sums, "mean": sums / counts}
  if prepared.normalize == "pmi":
    unconditional = dict(zip(unique, scores[len(continuations):]))
    normalised["pmi"] = sums - np.array([unconditional[b] for b in baseline])
  owner = np.array(owner)
  accuracy = {}
  for name, values in normalised.items():
    accuracy[name] = float(np.mean([
        int(np.argmax(values[owner == i])) in ex.right
        for i, ex in enumerate(prepared.examples)]))
  chance = float(np.mean([len(ex.right) / len(ex.choices)
                          for ex in prepared.examples]))
  return {"accuracy": accuracy[prepared.normalize], "chance": chance,
          "normalize": prepared.normalize,
          **{f"accuracy_{k}": v for k, v in accuracy.items()}}


def exact_match(run, prepared, vocab):
  """Accuracy of greedy decoding of as many tokens as each answer has."""
  prompts = [vocab.encode(c.strip()) for c in prepared.contexts]
  answers = [vocab.encode(ex.answer.strip()) for ex in prepared.examples]
  steps = max(len(a) for a in answers)
  print(f"[score] {prepared.task.name}: decoding {len(prompts):,} answers of up to "
        f"{steps} tokens", file=sys.stderr, flush=True)
  with sampling.RestoredLM(run.length, run.checkpoint) as lm:
    out = lm.sample(prompts, steps, temperature=0.0)
  correct = []
  for row, prompt, answer, ex in zip(out, prompts, answers, prepared.examples):
    new = sampling.new_tokens(row, len(prompt), len(answer))
    text = vocab.decode([t for t in new if t != sampling.EOS])
    correct.append(text.strip() == ex.answer.strip())
  return {"accuracy": float(np.mean(correct)), "chance": 0.0}


def _json_path(model_dir, task_name, shots):
  safe = task_name.replace("/", "_")
  return os.path.join(model_dir, f"score_{safe}_{shots}shot.json")


def _write(run, rows):
  """JSON per task (rows merged by step) and TensorBoard scalars."""
  paths = []
  for row in rows:
    path = _json_path(run.model_dir, row["task"], row["shots"])
    table = []
    if tf.io.gfile.exists(path):
      with tf.io.gfile.GFile(path) as f:
        table = [r for r in json.load(f) if r.get("step") != row["step"]]
    table = sorted(table + [row], key=lambda r: r["step"])
    files.write_json(path, table)
    paths.append(path)
  import tensorflow as tf2  # pylint: disable=g-import-not-at-top
  writer = tf2.summary.create_file_writer(os.path.join(run.model_dir, SCORE_DIR))
  with writer.as_default():
    for row in rows:
      tf2.summary.scalar(f"{row['task']}/{row['shots']}shot/accuracy",
                         row["accuracy"], step=row["step"])
  writer.close()
  return paths


def score(model_dir, task_names, shots=1, seed=0, limit=None, normalize=None,
          mesh=None, checkpoint_step=None, train_file=None, tfds_data_dir=None,
          gin_params=(), report=print):
  """Scores each task on one checkpoint; returns (rows, paths written).

  Tasks whose data is missing (SuperGLUE without prepared TFDS data) are skipped
  with one line each; if every task is missing that line is the error.
  """
  if shots < 0:
    raise UsageError(f"--shots {shots} is negative")
  if limit is not None and limit < 1:
    raise UsageError(f"--limit {limit} must be at least 1")
  if normalize is not None and normalize not in fewshot.NORMALIZATIONS:
    raise UsageError(f"--normalize {normalize!r}: choose one of "
                     f"{', '.join(fewshot.NORMALIZATIONS)}")
  names = fewshot.expand(task_names)
  if train_file and not any(fewshot.is_task_file(n) for n in names):
    raise UsageError("--train_file gives the shots of a JSONL task; no --task is "
                     "a JSONL file")
  # task files are read and checked first: nothing else is needed for that
  tasks = [fewshot.get(n, tfds_data_dir, train_file) for n in names]
  run = sampling.open_run(model_dir, mesh, checkpoint_step, gin_params)
  vocab = sampling.vocabulary()
  if not tfds_data_dir and run.record.get("tfds_data_dir"):   # a pretraining run's
    tasks = [fewshot.get(t.name, run.record["tfds_data_dir"])
             if t.name.startswith("super_glue/") else t for t in tasks]
  prepared, skipped = [], []
  for task in tasks:
    try:
      prepared.append(prepare(task, shots, seed, limit, normalize, vocab,
                              run.length))
    except UsageError as e:
      if not isinstance(e, DataNotPrepared):
        raise
      skipped.append(f"[score] skipping {task.name}: {e}")
  if not prepared:
    raise UsageError(skipped[0].split(": ", 1)[1])
  for line in skipped:
    report(line)
  rows = []
  for i, p in enumerate(prepared, 1):
    print(f"[score] task {i}/{len(prepared)}: {p.task.name}, {shots}-shot, "
          f"{len(p.examples):,} examples", file=sys.stderr, flush=True)
    if p.task.kind == fewshot.RANK:
      result = rank_classification(run, p, vocab)
    else:
      result = exact_match(run, p, vocab)
    rows.append({"task": p.task.name, "kind": p.task.kind, "shots": shots,
                 "seed": seed, "step": run.step, "examples": len(p.examples),
                 **result})
    line = (f"[score] {p.task.name} {shots}-shot step {run.step}: accuracy "
            f"{result['accuracy']:.4f} on {len(p.examples)} examples "
            f"(chance {result['chance']:.4f}")
    if p.task.kind == fewshot.RANK:
      others = ", ".join(f"{k} {result[f'accuracy_{k}']:.4f}"
                         for k in fewshot.NORMALIZATIONS if k != p.normalize
                         and f"accuracy_{k}" in result)
      line += f"; ranked by {p.normalize}; {others}"
    report(line + ")")
  return rows, _write(run, rows)

