"""Fine-tuning a pretrained checkpoint on a text-to-text task, T5's way.

T5's recipe (``MtfModel.finetune`` and its fine-tuning docs): parse the pretrained
run's ``operative_config.gin``, change the task and the lengths, start from its
checkpoint with ``utils.run.init_checkpoint`` and continue the step count from it,
at a constant learning rate of 1e-3. mesh-tensorflow restores the weights and the
global step, so the new run's first step is the pretrained step + 1; Adafactor's
slots start afresh (``gin/finetune/text2text.gin`` says why). The pretrained
folder is only read.

Decoder-only checkpoints fine-tune as mesh-tensorflow's ``delimited_lm``: each
example is ``[inputs, EOS, targets, EOS]`` in one sequence, with the loss on all of
it (``--format delimited``) or on the targets only (``--format prefix``, a prefix
LM whose inputs also attend to each other in full). Encoder-decoder checkpoints
fine-tune as they are (``encoder_decoder``). Each format is a gin file of
``gin/finetune/``, so ``t5_mesh_transformer`` runs the same configuration.

Evaluation decodes the validation split at each checkpoint and scores it with the
task's metric, through mesh-tensorflow's ``eval`` mode (T5's).
"""

import collections
import os
import sys
import time

import gin
from mesh_tensorflow.transformer import dataset as transformer_dataset
import tensorflow.compat.v1 as tf

from primer_mtf import configs
from primer_mtf.commands import evaluation
from primer_mtf.commands import run as run_lib
from primer_mtf.commands import runs
from primer_mtf.errors import UsageError
from primer_mtf.training import checkpoints

# --format: a file of gin/finetune/ (encoder_decoder for bi/* checkpoints)
DECODER_ONLY_FORMATS = ("delimited", "prefix")
ENCODER_DECODER_FORMAT = "encoder_decoder"
OPERATIVE_CONFIG = run_lib.OPERATIVE_CONFIG
DECODE_EVAL_DIR = "validation_eval"


def pretrained_checkpoint(pretrained_dir, step=None):
  """(path, step) of the checkpoint to start from: ``step`` or the latest."""
  if not tf.io.gfile.exists(os.path.join(pretrained_dir, OPERATIVE_CONFIG)):
    raise UsageError(f"{pretrained_dir} has no {OPERATIVE_CONFIG}; give the "
                     "model_dir of a finished pretraining run")
  if not checkpoints.steps(pretrained_dir):
    raise UsageError(f"{pretrained_dir} has no checkpoint to fine-tune from")
  return checkpoints.choose(pretrained_dir, step)


def make_record(pretrained_dir, task, fmt=None, model=None, mesh=None,
                checkpoint_step=None, finetune_steps=None, learning_rate=1e-3,
                lengths=None, gin_param=(), cache=None):
  """The record of a fine-tuning run (``primer_mtf_run.json``). ``fmt`` None:
  the checkpoint's own (delimited, or encoder_decoder). ``cache``: a folder
  where ``primer-mtf cache --task`` cached the task."""
  known = DECODER_ONLY_FORMATS + (ENCODER_DECODER_FORMAT,)
  if not 0 < learning_rate < float("inf"):   # NaN fails this too
    raise UsageError(f"--learning_rate {learning_rate} must be a finite number "
                     "more than 0 (a negative one trains by gradient ascent)")
  if finetune_steps is not None and finetune_steps < 1:
    raise UsageError(f"--finetune_steps {finetune_steps} must be at least 1")
  if fmt is not None and fmt not in known:
    raise UsageError(f"unknown --format {fmt!r}; use {', '.join(known)}")
  path, step = pretrained_checkpoint(pretrained_dir, checkpoint_step)
  return FinetuningRun.upgrade({"pretrained_dir": os.path.abspath(pretrained_dir),
          "checkpoint": os.path.abspath(path), "pretrained_step": step,
          "task": os.path.abspath(task) if os.path.isdir(task) else task,
          "format": fmt, "model": model, "mesh": mesh,
          "finetune_steps": finetune_steps, "learning_rate": learning_rate,
          "lengths": lengths, "gin_param": list(gin_param),
          "cache": cache if cache is None or "://" in cache else os.path.abspath(cache)})


def _format(record):
  """The gin/finetune/ file of the run: the checkpoint's kind decides."""
  encoder_decoder = configs.query("utils.run.model_type") == "bitransformer"
  fmt = record["format"]
  if fmt is None:
    return ENCODER_DECODER_FORMAT if encoder_decoder else DECODER_ONLY_FORMATS[0]
  if encoder_decoder != (fmt == ENCODER_DECODER_FORMAT):
    kind = "an encoder-decoder" if encoder_decoder else "a decoder-only"
    choices = ENCODER_DECODER_FORMAT if encoder_decoder else " or ".join(
        DECODER_ONLY_FORMATS)
    raise UsageError(f"{record['checkpoint']} is {kind} model; --format {fmt} does "
                     f"not fit it, use {choices}")
  return fmt


def bindings(record, fmt, length):
  """The run's bindings after the gin files: what T5's fine-tuning docs bind.
  ``length``: the pretrained inputs length, which the lengths follow."""
  if record["lengths"]:
    lengths = record["lengths"]
  elif fmt == ENCODER_DECODER_FORMAT:
    lengths = {"inputs": length, "targets": length // 4}
  else:   # inputs and targets share the pretrained length
    lengths = {"inputs": length * 3 // 4, "targets": length // 4}
  steps = record["finetune_steps"] or configs.query("utils.run.train_steps") or 1000
  out = [f"text2text_task.task = {record['task']!r}",
         f"utils.run.init_checkpoint = {record['checkpoint']!r}",
         f"utils.run.train_steps = {record['pretrained_step'] + steps}",
         # a resume skips only the fine-tuning batches already trained on
         "utils.run.skip_seen_data = True",
         f"utils.run.seen_data_init_step = {record['pretrained_step']}",
         f"utils.run.sequence_length = {lengths!r}",
         f"constant_learning_rate.learning_rate = {record['learning_rate']!r}",
         # the pretraining run's cache holds its LM task, not this one
         f"mesh_train_dataset_fn.use_cached = {bool(record.get('cache'))}",
         "mesh_eval_dataset_fn.use_cached = False"]
  if record.get("cache"):
    out.append(f"text2text_task.data_cache = {record['cache']!r}")
  if fmt != ENCODER_DECODER_FORMAT:
    # the combined [inputs, EOS, targets, EOS] sequence is up to their lengths' sum
    out.append(f"Unitransformer.max_length = {lengths['inputs'] + lengths['targets']}")
  return out


def parse(record, extra_params=()):
  """Parses the fine-tuning configuration: the pretrained operative config, the
  --model and --mesh overrides, the gin/finetune/ file, then the bindings.
  Returns the task name. Fails with one line before any write where the task or
  the checkpoint does not fit the model."""
  from primer_mtf.data import tasks  # pylint: disable=g-import-not-at-top
  from primer_mtf.data import text2text  # pylint: disable=g-import-not-at-top
  files = [os.path.join(record["pretrained_dir"], OPERATIVE_CONFIG)]
  if record["model"]:
    files.append(configs.resolve("models", record["model"]))
  if record["mesh"]:
    files.append(configs.resolve("meshes", record["mesh"]))
  configs.clear()
  # the pretraining run's cache holds its LM task; fine-tuning only reads the
  # pretrained vocabulary, never that cache
  configs.parse_files(files, ["corpus_task.data_cache = None"])
  fmt = _format(record)
  pretrained_length = configs.sequence_length()["inputs"]
  configs.parse_files([configs.resolve("finetune", fmt)])
  vocabulary = text2text.pretrained_vocabulary()
  runs.check_vocabulary(run_lib.read_record(record["pretrained_dir"]),
                        tasks.corpus_task(), record["pretrained_dir"])
  task = text2text.register(record["task"], vocabulary)
  configs.parse_files([], bindings(record, fmt, pretrained_length) +
                      list(record["gin_param"]) +
                      list(extra_params))
  if record.get("cache"):   # refused here, before anything is written
    text2text.text2text_task()
  checkpoints.check_matches(
      record["checkpoint"], vocabulary.vocab_size,
      "the checkpoint was trained with another architecture or vocabulary",
      "fine-tune with the model it was pretrained with")
  return task


def train(model_dir, record):
  """Fine-tunes the run ``record`` describes into ``model_dir``."""
  FinetuningRun(model_dir, record).train()


class FinetuningRun(run_lib.Run):
  """A run of ``primer-mtf finetune``: its record keeps the pretrained checkpoint,
  the task and the format, which rebuild its configuration on T5's recipe."""

  kind = "finetuning"
  description = "a fine-tuning run"
  defaults = {"cache": None}   # records before --cache

  def configure(self, gin_params=(), mesh=None):
    self.task = parse(dict(self.record, mesh=mesh or self.record["mesh"]), gin_params)

  def sequence_length(self):
    """A decoder-only run reads [inputs, EOS, targets, EOS] in one sequence."""
    if self.is_language_model():
      return configs.query("Unitransformer.max_length")
    return super().sequence_length()

  def train(self):
    """Fine-tunes; every check runs before anything is written."""
    model_dir, record = self.model_dir, self.record
    run_lib.check_writable(model_dir)
    if tf.io.gfile.exists(model_dir) and os.path.abspath(model_dir) == record[
        "pretrained_dir"]:
      raise UsageError("--model_dir is the pretrained folder; fine-tune into a new "
                       "one")
    old = run_lib.read_record(model_dir)

    def chosen(r):   # the flags; the bindings are compared whole below
      return {k: v for k, v in r.items() if k not in ("gin_param", "configuration")}

    if old is not None and (old.get("kind") not in ("finetune", self.kind)
                            or chosen(self.upgrade(old)) != chosen(record)):
      raise UsageError(f"{model_dir} holds another run; use a new --model_dir")
    if old is None:
      run_lib.check_no_foreign_checkpoints(model_dir)
    else:
      recorded = old.get("configuration")
      if recorded is None:   # a record from before it kept its configuration
        parse(self.upgrade(old))
        recorded = configs.bindings()
    task = parse(record)
    if old is not None:
      run_lib.check_same_configuration(model_dir, recorded, configs.bindings())
    self.record = dict(record, configuration=configs.bindings())
    intact, damaged = checkpoints.newest_intact(model_dir) if old else (None, [])
    if damaged and not intact:
      raise UsageError(f"every checkpoint of {model_dir} is damaged; fine-tune into "
                       "a new --model_dir")
    with self.writing(damaged, intact, "finetune"):
      self.write_record()
      print(f"[finetune] task {task} from {record['checkpoint']} "
            f"(step {record['pretrained_step']})", file=sys.stderr)
      print("[finetune] the training loss below is mesh-tensorflow's: the "
            "cross-entropy summed over the tokens it is on (the targets; with "
            "--format delimited the inputs too), divided by every position of the "
            "padded batch, so short examples make it read far below the loss per "
            "token; `eval` reports the task's metric",
            file=sys.stderr, flush=True)
      self.run_mtf()

  def eval_examples(self):
    """[(name, examples)] of what the decode eval reads: the gin-configured
    ``mesh_eval_dataset_fn`` (``num_eval_examples`` applies), each task's
    validation examples. The count keys the results, as perplexity eval's does."""
    from t5.models import mesh_transformer  # pylint: disable=g-import-not-at-top
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    out = []
    with tf.Graph().as_default():
      for ds in mesh_transformer.mesh_eval_dataset_fn(
          sequence_length=configs.sequence_length(), dataset_split="validation"):
        ds = transformer_dataset.EvalDataset(*ds)
        if ds.metric_fns:   # as mesh-tensorflow's eval_model keeps them
          out.append((ds.name, list(tfds.as_numpy(ds.dataset_fn()))))
    return out

  def evaluate(self, split="validation", gin_params=(), max_batches=100, mesh=None,
               report=None, **follow):
    """Decodes the validation split at every checkpoint not yet evaluated and
    scores it with the task's metric (mesh-tensorflow's ``eval`` mode, as T5
    evaluates); writes eval_validation.json and metric.png. ``follow``: see
    :func:`evaluation.follow_checkpoints`. Returns the JSON path, the PNG path and
    the table, as perplexity eval does.

    The results are kept by the number of examples evaluated (N, which
    ``mesh_eval_dataset_fn.num_eval_examples`` limits): the events go to
    ``validation_eval_<N>/``, and each row of eval_validation.json says its N
    (``num_examples``). T5's metrics, in percent in the events, are fractions in
    the table, as token accuracy and the few-shot accuracies are."""
    del max_batches   # the decode eval covers the whole validation split
    if split != "validation":
      self.refuse(f"it is evaluated on its task's validation split, not {split}")
    self.configure(gin_params, mesh)
    model_dir, task = self.model_dir, self.task
    datasets = self.eval_examples()
    count = sum(len(examples) for _, examples in datasets)
    eval_dir = os.path.join(model_dir, f"{DECODE_EVAL_DIR}_{count}")
    majority = majority_fraction(
        [ex.get("targets_pretokenized") for _, examples in datasets
         for ex in examples])

    def table():
      results = evaluation.read_eval_events(eval_dir, prefix="eval/")
      return [{"step": step, **{k.split("/")[-1]: v / PERCENT
                                for k, v in metrics.items()},
               "num_examples": count}
              for step, metrics in sorted(results.items())]

    def evaluate_steps(steps):
      from t5.models import mesh_transformer  # pylint: disable=g-import-not-at-top
      evaluation.announce(model_dir, steps, f"{task} validation ({count:,} "
                          "examples, decoded)")
      for i, step in enumerate(steps, 1):
        started = time.time()
        # eval_model writes its summaries with a graph-mode FileWriter
        with gin.unlock_config(), tf.Graph().as_default():
          self.run_mtf(mode="eval",
                       eval_dataset_fn=mesh_transformer.mesh_eval_dataset_fn,
                       eval_checkpoint_step=[step], dataset_split="validation",
                       eval_summary_dir=eval_dir)
        rows = table()
        for row in rows:
          if row["step"] == step:
            evaluation.checkpoint_done(i, len(steps), row, time.time() - started)
            if report:
              report(row)
        evaluation.write_results(model_dir, "validation", rows)
      evaluation.plot_metrics(model_dir, rows, task, majority)

    evaluation.follow_checkpoints(model_dir, lambda: {r["step"] for r in table()},
                                  evaluate_steps, **follow)
    rows = table()
    return (evaluation.write_results(model_dir, "validation", rows),
            evaluation.plot_metrics(model_dir, rows, task, majority), rows)


# T5's metrics (accuracy, BLEU, ROUGE, SQuAD's EM and F1) are in percent
PERCENT = 100.0
# a task has classes when its examples share few targets
MAX_CLASSES = 200


def majority_fraction(targets):
  """The accuracy of always answering the most common target, where the targets
  are classes (at most :data:`MAX_CLASSES` distinct, some repeated); else None."""
  targets = [t.decode() if isinstance(t, bytes) else t for t in targets
             if t is not None]
  if not targets:
    return None
  counts = collections.Counter(targets)
  if len(counts) > MAX_CLASSES or len(counts) == len(targets):
    return None
  return max(counts.values()) / len(targets)
