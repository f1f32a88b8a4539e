"""Text-to-text tasks for fine-tuning: (inputs, targets) pairs and a metric.

``--task`` values:
  * ``kjv_book``: given a verse of the embedded King James Bible, name its book
    (66 names; "First Samuel" for "1 Samuel"). Training examples are the verses of
    the corpus's training chapters; validation examples the verses of its
    validation chapters, which neither pretraining nor fine-tuning reads (the
    split rule of :mod:`primer_mtf.data.splits`), in a fixed shuffled order.
  * a folder holding ``train.jsonl`` and ``validation.jsonl`` (one
    ``{"inputs": "...", "targets": "..."}`` object a line) or ``train.tsv`` and
    ``validation.tsv`` (``inputs<TAB>targets`` a line), and optionally
    ``task.json``: ``{"metric": "accuracy"}`` (see :data:`METRICS`).
  * the name of a registered seqio task, such as T5's GLUE and SuperGLUE tasks
    (``glue_cola_v002``, ``super_glue_boolq_v102``: they read prepared TFDS data
    and T5's vocabulary). It is used as registered, so its vocabulary must be the
    checkpoint's.

The tasks built here are registered on the pretrained run's vocabulary, add EOS to
inputs and targets, and decode-evaluate with their metric.

``text2text_task()`` is the gin entry point, as ``corpus_task()`` is for
pretraining: the gin files of ``gin/finetune/`` bind
``mesh_train_dataset_fn.mixture_or_task_name = @primer_mtf.text2text_task()``, and
the run binds ``text2text_task.task``. The vocabulary is the one the pretrained
operative config gives ``corpus_task``.
"""

import functools
import hashlib
import json
import os
import random

import gin
import seqio
import tensorflow.compat.v1 as tf
from t5.evaluation import metrics as t5_metrics

from primer_mtf.data import bible
from primer_mtf.data import cache_check
from primer_mtf.data import tasks
from primer_mtf.data import vocab as vocab_lib
from primer_mtf.data.splits import SPLITS
from primer_mtf.errors import UsageError

KJV_BOOK = "kjv_book"
METRICS = {
    "accuracy": t5_metrics.accuracy,            # exact match of the decoded text
    "sequence_accuracy": t5_metrics.sequence_accuracy,
    "bleu": t5_metrics.bleu,
    "rouge": t5_metrics.rouge,
    "squad": t5_metrics.squad,                  # exact match and F1 over tokens
}


def kjv_book_examples():
  """{split: [(verse, book)]} of the embedded Bible, split by chapter as the
  pretraining corpus is."""
  out = {s: [(v.text, bible.book_in_words(v.book)) for v in bible.split_verses(s)]
         for s in SPLITS}
  # the file is in canonical order; mix the books, so that the first n validation
  # examples (an eval capped with num_eval_examples) are a fair sample
  random.Random(0).shuffle(out["validation"])
  return out


def _read_text(path):
  """A task file's text; one line naming the file and line where it is not UTF-8."""
  with tf.io.gfile.GFile(path, "rb") as f:
    data = f.read()
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    line = data[:e.start].count(b"\n") + 1
    raise UsageError(f"{path}:{line}: not UTF-8 text (bad byte at offset "
                     f"{e.start}); save the file as UTF-8") from None


def _read_examples(path):
  """(inputs, targets) pairs of one JSONL or TSV file; one line per error."""
  examples = []
  for number, line in enumerate(_read_text(path).split("\n"), start=1):
    if not line.strip():
      continue
    if path.endswith(".tsv"):
      fields = line.rstrip("\n").split("\t")
      if len(fields) != 2:
        raise UsageError(f"{path}:{number}: expected inputs<TAB>targets, got "
                         f"{len(fields)} field(s)")
      examples.append(tuple(fields))
      continue
    try:
      obj = json.loads(line)
    except json.JSONDecodeError as e:
      raise UsageError(f"{path}:{number}: not JSON ({e.msg})") from None
    if not (isinstance(obj, dict) and isinstance(obj.get("inputs"), str)
            and isinstance(obj.get("targets"), str)):
      raise UsageError(f'{path}:{number}: expected {{"inputs": "...", '
                       '"targets": "..."}')
    examples.append((obj["inputs"], obj["targets"]))
  if not examples:
    raise UsageError(f"{path} has no examples")
  return examples


def folder_examples(folder):
  """({split: [(inputs, targets)]}, metric name) of a task folder."""
  out = {}
  for split in SPLITS:
    found = [os.path.join(folder, f"{split}.{ext}") for ext in ("jsonl", "tsv")
             if tf.io.gfile.exists(os.path.join(folder, f"{split}.{ext}"))]
    if not found:
      raise UsageError(f"task folder {folder} has no {split}.jsonl or {split}.tsv")
    out[split] = _read_examples(found[0])
  metric = "accuracy"
  spec = os.path.join(folder, "task.json")
  if tf.io.gfile.exists(spec):
    try:
      options = json.loads(_read_text(spec))
    except json.JSONDecodeError as e:
      raise UsageError(f"{spec}: not JSON ({e.msg} at line {e.lineno} column "
                       f'{e.colno}); write it as {{"metric": "accuracy"}}') from None
    if not isinstance(options, dict):
      raise UsageError(f'{spec}: expected a JSON object such as {{"metric": '
                       f'"accuracy"}}, not {type(options).__name__}')
    metric = options.get("metric", metric)
  if not isinstance(metric, str):
    raise UsageError(f"{spec}: the metric is {metric!r}; name one of "
                     f"{', '.join(METRICS)}")
  if metric not in METRICS:
    raise UsageError(f"{spec}: unknown metric {metric!r}; use one of "
                     f"{', '.join(METRICS)}")
  return out, metric


def _source(examples):
  def dataset_fn(split, shuffle_files, seed=None):
    pairs = examples[split]
    ds = tf.data.Dataset.from_tensor_slices({
        "inputs": tf.constant([p[0] for p in pairs], tf.string),
        "targets": tf.constant([p[1] for p in pairs], tf.string)})
    if shuffle_files:
      ds = ds.shuffle(len(pairs), seed=seed, reshuffle_each_iteration=True)
    return ds
  return seqio.FunctionDataSource(dataset_fn, splits=SPLITS)


def _fingerprint(examples):
  h = hashlib.sha256(json.dumps(examples, sort_keys=True).encode("utf-8"))
  return h.hexdigest()[:12]


def _model_file(vocabulary):
  return getattr(vocabulary, "sentencepiece_model_file", None)


def same_vocabulary(a, b):
  """Whether two vocabularies tokenize alike: the same SentencePiece model (the
  same path, or local files with the same pieces) and the same extra ids. Nothing
  is read from a bucket."""
  path_a, path_b = _model_file(a), _model_file(b)
  if type(a) is not type(b) or getattr(a, "extra_ids", 0) != getattr(b, "extra_ids", 0):
    return False
  if path_a == path_b:
    return True
  if not (path_a and path_b) or "://" in path_a + path_b:
    return False
  if not (os.path.exists(path_a) and os.path.exists(path_b)):
    return False
  return vocab_lib.digest(path_a) == vocab_lib.digest(path_b)


def _vocabulary_key(vocabulary):
  path = _model_file(vocabulary)
  digest = vocab_lib.digest(path)[:12] if path and os.path.exists(path) else "none"
  return f"{digest}_x{getattr(vocabulary, 'extra_ids', 0)}"


def register(value, vocabulary):
  """Registers (once) and names the fine-tuning task of a ``--task`` value on
  ``vocabulary``; a registered seqio task must already use that vocabulary."""
  if value == KJV_BOOK:
    examples, metric, key = kjv_book_examples(), "accuracy", KJV_BOOK
  elif os.path.isdir(value):
    examples, metric = folder_examples(value)
    key = "local_" + _fingerprint(examples)
  else:
    import t5.data.tasks  # pylint: disable=g-import-not-at-top,unused-import
    if value not in seqio.TaskRegistry.names():
      raise UsageError(f"unknown --task {value!r}: give {KJV_BOOK}, a task folder "
                       "(train.jsonl and validation.jsonl, or .tsv) or a "
                       "registered seqio task such as glue_cola_v002")
    registered = seqio.get_mixture_or_task(value)
    theirs = registered.output_features["targets"].vocabulary
    if not same_vocabulary(theirs, vocabulary):
      raise UsageError(f"task {value} is tokenized with {_model_file(theirs)}, the "
                       f"checkpoint with {_model_file(vocabulary)}; fine-tune on a "
                       "task with the checkpoint's vocabulary")
    return value
  name = f"primer_mtf_t2t_{key}_{_vocabulary_key(vocabulary)}"
  if name not in seqio.TaskRegistry.names():
    feature = functools.partial(seqio.Feature, vocabulary, add_eos=True)
    seqio.TaskRegistry.add(
        name, source=_source(examples),
        preprocessors=[seqio.preprocessors.tokenize,
                       seqio.CacheDatasetPlaceholder(),
                       seqio.preprocessors.append_eos_after_trim],
        output_features={"inputs": feature(), "targets": feature()},
        metric_fns=[METRICS[metric]])
  return name


def pretrained_vocabulary():
  """The vocabulary of the configured pretraining task (``corpus_task``)."""
  return seqio.get_mixture_or_task(tasks.corpus_task()).output_features[
      "targets"].vocabulary


@gin.configurable("text2text_task", module="primer_mtf")
def text2text_task(task=gin.REQUIRED, data_cache=None):
  """Registers (once) and names the fine-tuning task ``task`` (a ``--task``
  value) on the pretrained run's vocabulary; ``data_cache``: as
  ``corpus_task``'s, a folder where ``primer-mtf cache --task`` cached it."""
  name = register(task, pretrained_vocabulary())
  if data_cache:
    cache_check.check(data_cache, name, f"primer-mtf cache --task {task} --output "
                      f"{data_cache} (with the pretraining run's corpus flags)",
                      tasks.vocabulary_file(name), tasks.vocabulary_digest(name))
    cache_check.use(data_cache)
  return name
