"""A pretraining run: its record, the rule that a model_dir is resumed and never
re-purposed, and its train and eval flows.

A run is gin files plus bindings, exactly what ``t5_mesh_transformer`` would be
given; the record (``primer_mtf_run.json``) keeps the flags that chose them, so
eval and a restart rebuild the same model. Training is mesh-tensorflow's
``utils.run``, the function T5's binary calls.
"""

import os
import sys

import tensorflow.compat.v1 as tf

from primer_mtf import configs
from primer_mtf.commands import run as run_lib
from primer_mtf.data import corpus as corpus_lib
from primer_mtf.errors import UsageError
from primer_mtf.planning import model_graph
from primer_mtf.training import checkpoints

# Settings that define the model and data; a resumed run must not change them.
IDENTITY = ("model", "size", "objective", "corpus", "vocab_size", "vocabulary",
            "gin_file", "seed", "cached")
# The seed of weight initialisation and data order when --seed is not given (the
# data seed every run had before --seed existed).
DEFAULT_SEED = 1234


def make_record(model, size, mesh, corpus, vocab_size, vocabulary=None,
                tfds_data_dir=None, gin_file=(), gin_param=(),
                objective=configs.OBJECTIVE, seed=DEFAULT_SEED, cache=None):
  """The record of a run: every flag that chose its gin files and bindings."""
  return PretrainingRun.upgrade({
      "model": model, "size": size, "mesh": mesh, "objective": objective,
      "corpus": corpus_lib.canonical_name(corpus),
      "vocab_size": vocab_size, "vocabulary": vocabulary,
      "tfds_data_dir": tfds_data_dir,
      "gin_file": [os.path.abspath(configs.locate(f)) for f in gin_file],
      "gin_param": list(gin_param), "seed": seed,
      "cache": cache if cache is None or "://" in cache else os.path.abspath(cache)})


def _identity(record, key):
  """A record's value of an IDENTITY key; ``cached``: whether it reads a cache
  (the folder may move, but a cached stream is another order of the data)."""
  if key == "cached":
    return bool(record.get("cache"))
  return record.get(key)


def check_resume(model_dir, record):
  """True if ``model_dir`` holds this run; fails if it holds another one."""
  run_lib.check_writable(model_dir)
  old = run_lib.read_record(model_dir)
  if old is None:
    if run_lib.BinaryRun.holds_one(model_dir):
      run_lib.BinaryRun(model_dir).train()   # refused: it is T5's binary's
    run_lib.check_no_foreign_checkpoints(model_dir)
    return False
  if old.get("kind") not in (None, PretrainingRun.kind):
    raise UsageError(f"{model_dir} holds a {old['kind']} run, not a pretraining "
                     "run; use a new --model_dir")
  old = PretrainingRun.upgrade(old)
  changed = [k for k in IDENTITY if _identity(old, k) != _identity(record, k)
             and not (k == "seed" and old.get("seed") is None)]
  if changed:
    k = changed[0]
    raise UsageError(f"{model_dir} holds a run with {k}={_identity(old, k)!r}, not "
                     f"{_identity(record, k)!r}; resume it with the same settings "
                     "or use a new --model_dir")
  return True


def corpus_bindings(record):
  """The ``corpus_task`` bindings of a record (its corpus name is canonical)."""
  bindings = [f"corpus_task.corpus = {record['corpus']!r}",
              f"corpus_task.vocab_size = {record['vocab_size']}"]
  if record.get("vocabulary"):
    path = os.path.abspath(record["vocabulary"])
    bindings.append(f"corpus_task.vocabulary = {path!r}")
  if record.get("tfds_data_dir"):
    bindings.append(f"corpus_task.tfds_data_dir = {record['tfds_data_dir']!r}")
  if record.get("seed") is not None:
    bindings += seed_bindings(record["seed"])
  return bindings + cache_bindings(record.get("cache"))


def seed_bindings(seed):
  """``--seed``: the data order and the weights' initial values."""
  return [f"mesh_train_dataset_fn.seed = {seed}", f"train_with_progress.seed = {seed}"]


def cache_bindings(cache):
  """``--cache DIR``: training and eval read the pre-tokenized cache in DIR."""
  if not cache:
    return []
  return [f"corpus_task.data_cache = {cache!r}", "mesh_train_dataset_fn.use_cached = True",
          "mesh_eval_dataset_fn.use_cached = True"]


def parse(record, extra_params=()):
  """Parses a run's gin configuration and checks that the model suits the
  objective and that its layout divides."""
  configs.parse(record["model"], record["size"], record["mesh"], record["gin_file"],
                corpus_bindings(record) + list(record["gin_param"]) +
                list(extra_params),
                record.get("objective", configs.OBJECTIVE))
  check_objective(record)
  model_graph.check_layout(record["vocab_size"] + configs.query("corpus_task.extra_ids", 0))


def check_objective(record):
  """An encoder-decoder model needs an encoder-decoder objective and the other
  way round; span corruption gets T5's targets length for the inputs length."""
  from primer_mtf.data import tasks  # pylint: disable=g-import-not-at-top
  objective = configs.query("corpus_task.objective", "eos_per_document")
  encoder_decoder = configs.query("utils.run.model_type") == "bitransformer"
  if encoder_decoder != (objective in tasks.ENCODER_DECODER_OBJECTIVES):
    if encoder_decoder:
      raise UsageError(f"--model {record['model']} is an encoder-decoder; train it "
                       "with an encoder-decoder objective: --objective span_corruption")
    raise UsageError(f"objective {objective} trains encoder-decoder models; choose "
                     "one with --model bi/NAME")
  if objective == "span_corruption":
    lengths = configs.sequence_length()
    needed = tasks.span_corruption_targets_length(lengths["inputs"])
    if lengths["targets"] < needed:
      raise UsageError(f"span corruption of {lengths['inputs']} input tokens needs "
                       f"{needed} target tokens, not {lengths['targets']}; raise the "
                       "targets length of utils.run.sequence_length")
    if lengths["targets"] == lengths["inputs"]:   # a size file's default: T5's ratio
      import gin  # pylint: disable=g-import-not-at-top
      with gin.unlock_config():
        gin.bind_parameter("utils.run.sequence_length",
                           {"inputs": lengths["inputs"], "targets": needed})


def vocabulary_size(task):
  """Ids of a task's vocabulary, extra ids included (before mtf pads them)."""
  import seqio  # pylint: disable=g-import-not-at-top
  return seqio.get_mixture_or_task(task).output_features["targets"].vocabulary.vocab_size


def check_vocabulary(record, task, model_dir):
  """The task's vocabulary is the one the run trained with (the hash of the
  SentencePiece model's pieces in the record); returns the hash (None for a
  bucket path)."""
  from primer_mtf.data import tasks  # pylint: disable=g-import-not-at-top
  digest = tasks.vocabulary_digest(task)
  if digest is None:
    return None
  recorded = (record or {}).get("vocabulary_pieces_sha256")
  if recorded and recorded != digest:
    path = tasks.vocabulary_file(task)
    raise UsageError(f"{model_dir} was trained with another vocabulary than {path} "
                     "(that file changed since); give the run's own SentencePiece "
                     "model with --vocabulary")
  return digest


def check_checkpoint(model_dir, task, fix, path=None):
  """Checkpoint ``path`` (default: the newest of ``model_dir``) holds the
  configured model (or there is none); returns its path."""
  if path is None:
    found = checkpoints.steps(model_dir)
    path = checkpoints.path(model_dir, found[-1]) if found else None
  if path:
    checkpoints.check_matches(path, vocabulary_size(task),
                              f"{model_dir} holds a run of another model", fix)
  return path


def train(model_dir, record):
  """Trains (or resumes) the run ``record`` describes in ``model_dir``."""
  PretrainingRun(model_dir, record).train()


class PretrainingRun(run_lib.Run):
  """A run of ``primer-mtf train``: its record keeps the flags that chose its gin
  files and bindings, so eval, sampling and a restart rebuild the same model."""

  kind = "pretraining"
  description = "a pretraining run"
  # A record from before --seed has no seed: its weights were not seeded, and
  # any seed resumes it (its data seed is in its gin bindings).
  defaults = {"objective": configs.OBJECTIVE, "cache": None}

  def configure(self, gin_params=(), mesh=None):
    parse(dict(self.record, mesh=mesh or self.record["mesh"]), gin_params)

  def compare_curve(self):
    return self.record

  def recorded_configuration(self):
    """The whole configuration the run in this folder was trained with: its
    record's, or for a record from before it kept one, its flags parsed again."""
    old = run_lib.read_record(self.model_dir)
    if "configuration" in old:
      return old["configuration"]
    PretrainingRun(self.model_dir, old).configure()
    return configs.bindings()

  def embedding_rows(self):
    """The newest checkpoint's rows, else those the record's vocabulary gets."""
    if self.checkpoint_steps():
      return super().embedding_rows()
    from primer_mtf.data import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
    return vocab_lib.embedding_rows(self.record["vocab_size"])

  def train(self):
    """Trains (or resumes); nothing is written before every check passed: the
    flags, gin, the layout, the objective, the corpus and vocabulary, and on a
    resume that the newest checkpoint holds this model."""
    from primer_mtf.data.tasks import corpus_task  # pylint: disable=g-import-not-at-top
    model_dir, record = self.model_dir, self.record
    resuming = check_resume(model_dir, record)
    recorded = self.recorded_configuration() if resuming else None
    self.configure()
    if resuming:
      run_lib.check_same_configuration(model_dir, recorded, configs.bindings())
    final_step = configs.query("utils.run.train_steps")
    if not isinstance(final_step, int) or final_step < 1:
      raise UsageError(f"train_steps is {final_step!r}; train at least one step")
    task = corpus_task()  # loads the corpus and vocabulary: fails before any write
    self.record = dict(record, configuration=configs.bindings(),
                       vocabulary_pieces_sha256=check_vocabulary(
                           run_lib.read_record(model_dir) if resuming else None,
                           task, model_dir))
    ckpt, damaged = self.resume_point(task) if resuming else (None, [])
    if ckpt and checkpoints.step_of(ckpt) >= final_step:
      print(f"[train] {model_dir} is already at step {checkpoints.step_of(ckpt)} of "
            f"{final_step}: nothing to do (raise --train_steps to train further)",
            file=sys.stderr)
      return
    with self.writing(damaged, ckpt):
      self.write_record()
      if ckpt:
        print(f"[train] resuming {model_dir} from {ckpt}", file=sys.stderr)
      print(f"[train] task {task}", file=sys.stderr)
      self.run_mtf()

  def resume_point(self, task):
    """(the newest whole checkpoint, [(path, why) of damaged newer ones]), after
    checking that it holds this model and can resume under these settings."""
    from primer_mtf.training import divergence  # pylint: disable=g-import-not-at-top
    model_dir = self.model_dir
    ckpt, damaged = checkpoints.newest_intact(model_dir)
    if damaged and not ckpt:
      raise UsageError(f"every checkpoint of {model_dir} is damaged ("
                       f"{os.path.basename(damaged[0][0])}: {damaged[0][1]}); "
                       "restore the run from a copy, or use a new --model_dir")
    if not ckpt:
      return None, damaged
    check_checkpoint(model_dir, task, "resume it with the settings it was trained "
                     "with, or use a new --model_dir", ckpt)
    if divergence.skips_steps() and divergence.SKIPPED_STEPS not in dict(
        tf.train.list_variables(ckpt)):
      raise UsageError(f"{model_dir} was started without skipping non-finite "
                       "steps, and its checkpoints have no skipped_steps counter; "
                       "resume it without guards/skip_nonfinite_steps.gin, or use "
                       "a new --model_dir")
    return ckpt, damaged

  def evaluate(self, split="validation", gin_params=(), max_batches=100, mesh=None,
               **follow):
    """Perplexity eval of every checkpoint not yet evaluated."""
    from primer_mtf.commands import evaluation  # pylint: disable=g-import-not-at-top
    from primer_mtf.data.tasks import corpus_task  # pylint: disable=g-import-not-at-top
    self.configure(gin_params, mesh)
    task = corpus_task()
    check_vocabulary(self.record, task, self.model_dir)
    check_checkpoint(self.model_dir, task, "its record no longer describes its "
                     "checkpoints; evaluate it with the settings it was trained with")
    return evaluation.evaluate(self.model_dir, task, split, max_batches, **follow)
