"""A run: one model_dir, and the object every command opens it through.

A model_dir holds one of three kinds of run:

* pretraining (``primer-mtf train``): its record keeps the flags that chose its gin
  files (:class:`primer_mtf.commands.runs.PretrainingRun`);
* fine-tuning (``primer-mtf finetune``): its record keeps the pretrained checkpoint
  and the task (:class:`primer_mtf.commands.finetune.FinetuningRun`);
* a run trained by T5's ``t5_mesh_transformer`` (:class:`BinaryRun`): no record,
  only its ``operative_config.gin`` and checkpoints. It is adopted as it is: read,
  never rewritten.

A :class:`Run` owns its record (``primer_mtf_run.json``, with its schema version),
its checkpoints and the call into mesh-tensorflow's ``utils.run``. Each kind says
how its gin configuration is parsed and what it is evaluated on; a command a kind
cannot serve is refused with one line. :func:`primer_mtf.commands.kinds.open_run`
opens whichever kind a folder holds.
"""

import contextlib
import datetime
import json
import os
import socket
import sys

import tensorflow.compat.v1 as tf

from primer_mtf import configs
from primer_mtf import files
from primer_mtf.errors import UsageError
from primer_mtf.training import checkpoints

RUN_RECORD = "primer_mtf_run.json"
LOCK = "primer_mtf_run.lock"
OPERATIVE_CONFIG = "operative_config.gin"
# 1: records before kinds were named (no "schema"; a fine-tuning record says
# kind "finetune", a pretraining record no kind); 2: every record names both.
SCHEMA = 2


# What a resume may change: it changes neither the model nor its data. The step
# budget, checkpoint and eval intervals, logging, and the mesh (its layout is
# checked when the configuration is parsed). {configurable: parameters}, None
# for all of them.
RESUMABLE = {
    "run": {"train_steps", "save_checkpoints_steps", "keep_checkpoint_max",
            "iterations_per_loop", "mesh_shape", "mesh_devices", "layout_rules",
            "perplexity_eval_steps", "eval_checkpoint_step"},
    "accelerator": None, "tpu_mesh_shape": None, "mesh_eval_dataset_fn": None,
    "get_variable_dtype": {"activation_dtype"}, "fused_depthwise_conv": {"xla_jit"},
    "serialize_num_microbatches": {"tokens_per_microbatch_per_replica"},
    "train_with_progress": {"every_n_steps"},
}


def resumable(name):
  """Whether binding ``name`` (``scope/module.configurable.param``) may change."""
  parts = name.split("/")[-1].split(".")
  if len(parts) < 2:
    return False                              # a macro: d_model, num_heads, ...
  allowed = RESUMABLE.get(parts[-2], ())
  return allowed is None or parts[-1] in allowed


def check_same_configuration(model_dir, recorded, now):
  """A resume's whole configuration equals the recorded one, but for what
  :data:`RESUMABLE` allows; one line naming the bindings that differ."""
  changed = sorted(k for k in set(recorded) | set(now)
                   if recorded.get(k) != now.get(k) and not resumable(k))
  if changed:
    shown = "; ".join(f"{k} = {recorded.get(k, '(unbound)')} (now "
                      f"{now.get(k, '(unbound)')})" for k in changed[:3])
    more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
    raise UsageError(f"{model_dir} was trained with {shown}{more}; a resume may "
                     "change only the step budget, checkpoint and eval intervals, "
                     "logging and the mesh: resume it with its own settings or use "
                     "a new --model_dir")


def read_record(model_dir):
  """The record in ``model_dir``, or None where there is none."""
  path = os.path.join(model_dir, RUN_RECORD)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    text = f.read()
  try:
    record = json.loads(text)
  except ValueError:
    record = None
  if not isinstance(record, dict):
    raise UsageError(f"{path} is damaged (cut short or not a run record); restore "
                     "it from a copy of the run, or use a new --model_dir")
  return record


def check_writable(model_dir):
  """A --model_dir that is a file, or under a folder this user cannot write, is
  refused before anything is written. (Buckets are checked by writing.)"""
  if "://" in model_dir:
    return
  if os.path.exists(model_dir) and not os.path.isdir(model_dir):
    raise UsageError(f"--model_dir {model_dir} is a file; give a folder")
  existing = os.path.abspath(model_dir)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise UsageError(f"--model_dir {model_dir} is under the file {existing}; give "
                     "a folder")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise UsageError(f"cannot write in {existing}; give a --model_dir you can write")


def check_no_foreign_checkpoints(model_dir):
  """A folder with no run record must hold no checkpoints either."""
  if tf.io.gfile.exists(model_dir) and checkpoints.steps(model_dir):
    raise UsageError(f"{model_dir} holds checkpoints that primer-mtf did not "
                     "write; use a new --model_dir")


@contextlib.contextmanager
def writer_lock(model_dir):
  """One writer per run: ``train`` and ``finetune`` hold ``primer_mtf_run.lock``
  (host, process, start) while they write the run.

  On a local disk the lock is created atomically (``O_EXCL``); a second writer is
  refused with one line naming the holder. A lock left by a killed process of
  this host is taken over. One from another host cannot be checked from here:
  the message says to delete it once that process is gone. On a bucket the lock
  is written and read back, which narrows the race but cannot close it (object
  stores have no exclusive create through ``tf.io.gfile``).
  """
  path = os.path.join(model_dir, LOCK)
  mine = {"host": socket.gethostname(), "pid": os.getpid(),
          "since": datetime.datetime.now().isoformat(timespec="seconds")}
  tf.io.gfile.makedirs(model_dir)
  for _ in range(2):
    if "://" in path:
      if not tf.io.gfile.exists(path):
        files.write_json(path, mine)
    else:
      try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w") as f:
          json.dump(mine, f)
      except FileExistsError:
        pass
    try:
      with tf.io.gfile.GFile(path) as f:
        holder = json.load(f)
    except (ValueError, tf.errors.NotFoundError):
      holder = None                 # cut short by a kill, or just released
    if holder == mine:
      break
    stale = holder is None or (holder.get("host") == mine["host"]
                               and not files.process_alive(holder.get("pid", -1)))
    if not stale:
      raise UsageError(
          f"{model_dir} is in use by process {holder.get('pid')} on "
          f"{holder.get('host')} (since {holder.get('since')}); wait for it to end, "
          f"or if it is gone, delete {path}")
    tf.io.gfile.remove(path)        # the writer that left it is gone: take over
  else:
    raise UsageError(f"could not take the lock {path}; try again")
  try:
    yield
  finally:
    tf.io.gfile.remove(path)


class Run:
  """A model_dir of some kind; subclasses say how it is configured and evaluated.

  ``record`` is the run's record with the defaults of older schemas filled in
  (None for a binary run). Nothing is written by opening a run.
  """

  kind = None          # the record's "kind"
  description = None   # "a pretraining run", for messages
  # Values a record written before a field existed had (see SCHEMA).
  defaults = {}

  def __init__(self, model_dir, record=None):
    self.model_dir = model_dir
    self.record = None if record is None else self.upgrade(record)

  @classmethod
  def upgrade(cls, record):
    """The record as the current schema writes it."""
    return {**cls.defaults, **record, "kind": cls.kind, "schema": SCHEMA}

  def write_record(self):
    files.write_json(os.path.join(self.model_dir, RUN_RECORD), self.record)

  @contextlib.contextmanager
  def writing(self, damaged=(), intact=None, command="train"):
    """Holds the run's writer lock while the block writes the run. First it
    clears what unfinished writes of a killed or failed start left, and moves
    ``damaged`` checkpoints (``(path, why)``, from ``checkpoints.newest_intact``)
    to ``damaged/`` with one line each, so training resumes from ``intact``."""
    with writer_lock(self.model_dir):
      files.remove_partial_writes(self.model_dir)
      for path, why in damaged:
        print(f"[{command}] skipping {os.path.basename(path)}: it is damaged "
              f"({why}); moved to {checkpoints.DAMAGED_DIR}/", file=sys.stderr)
      if damaged:
        checkpoints.set_aside(self.model_dir, damaged, intact)
      try:
        yield
      except BaseException:
        files.remove_partial_writes(self.model_dir)   # e.g. a full disk's
        raise

  # -- checkpoints

  def checkpoint_steps(self):
    return checkpoints.steps(self.model_dir)

  def checkpoint(self, step=None):
    """(path, step) of checkpoint ``step``, or of the newest; one line if none."""
    return checkpoints.choose(self.model_dir, step)

  def embedding_rows(self):
    """Rows of the model's vocabulary embedding, from its newest checkpoint."""
    if self.checkpoint_steps():
      for name, shape in tf.train.list_variables(self.checkpoint()[0]):
        if name.endswith("embedding") and len(shape) == 2:
          return shape[0]
    return self.refuse("it has no checkpoint with an embedding to size its "
                       "vocabulary from")

  # -- configuration

  def configure(self, gin_params=(), mesh=None):
    """Parses the run's gin configuration (clearing any earlier one), with
    ``gin_params`` last and ``mesh`` (a --mesh name) in place of its own mesh."""
    raise NotImplementedError

  def is_language_model(self):
    """Whether the configured model is a causal decoder-only LM (gin
    configured): ``lm``, or ``delimited_lm``, the same model fine-tuned on
    [inputs, EOS, targets, EOS] sequences. A ``prefix_lm`` reads its inputs with
    full attention, and a ``bitransformer`` has an encoder: neither is one."""
    return configs.query("utils.run.model_type", "bitransformer") in (
        "lm", "delimited_lm")

  def sequence_length(self):
    """Tokens in one of the model's sequences (gin configured)."""
    return configs.sequence_length()["targets"]

  # -- commands

  def refuse(self, what):
    raise UsageError(f"{self.model_dir} is {self.description}; {what}")

  def train(self):
    self.refuse("primer-mtf trains only the runs it started")

  def evaluate(self, split="validation", gin_params=(), max_batches=100, mesh=None,
               **follow):
    """Evaluates every checkpoint not yet evaluated; returns the JSON path, the
    PNG path and the table (``follow``: see ``evaluation.follow_checkpoints``)."""
    raise NotImplementedError

  def compare_curve(self):
    """What ``compare`` needs of a run: its record, with model and size."""
    self.refuse("compare takes pretraining runs of primer-mtf (it reads the model "
                "and size from their records to count FLOPs)")

  def run_mtf(self, **kwargs):
    """mesh-tensorflow's ``utils.run`` on this run's folder (gin configured)."""
    from mesh_tensorflow.transformer import utils as mtf_utils  # pylint: disable=g-import-not-at-top
    mtf_utils.run(tpu_job_name=None, tpu=None, gcp_project=None, tpu_zone=None,
                  model_dir=self.model_dir, **kwargs)


class BinaryRun(Run):
  """A run trained by ``t5_mesh_transformer``: its operative config is its record.

  It is configured as the binary would be for eval (its ``operative_config.gin``,
  then bindings), evaluated on the task its operative config evaluates, sampled and
  scored like any language model, and fine-tuned from. It is never trained or
  written by primer-mtf: nothing here writes a record into it.
  """

  kind = "t5_mesh_transformer"
  description = "a run trained by t5_mesh_transformer"

  @classmethod
  def holds_one(cls, model_dir):
    return (tf.io.gfile.exists(os.path.join(model_dir, OPERATIVE_CONFIG))
            and bool(checkpoints.steps(model_dir)))

  def train(self):
    self.refuse("primer-mtf does not rewrite it: continue it with "
                "t5_mesh_transformer, or fine-tune from it with `primer-mtf "
                "finetune --pretrained_dir`")

  def configure(self, gin_params=(), mesh=None):
    # mesh-tensorflow's defaults first, as the binary parses them: they fill what
    # a run of T5's MtfModel passed in code (layout rules, batch) and left out
    gin_files = [configs.MTF_DEFAULTS, os.path.join(self.model_dir, OPERATIVE_CONFIG)]
    if mesh:
      gin_files.append(configs.resolve("meshes", mesh))
    configs.clear()
    # the binary binds the vocabulary in code, after its gin files (T5's
    # mesh_transformer_main), so its operative config does not hold it
    configs.parse_files(gin_files, ["utils.run.vocabulary = "
                                "@t5.models.mesh_transformer.get_vocabulary()",
                                *gin_params])
    if configs.query("utils.run.sequence_length") is None:   # T5's MtfModel's
      self.refuse("its operative config does not hold its sequence length (a run "
                  "of T5's MtfModel passes it in code); give it with --gin_param "
                  "\"utils.run.sequence_length = {'inputs': N, 'targets': N}\"")

  def eval_task(self):
    """The task its operative config evaluates (or trains) on, registered."""
    import gin  # pylint: disable=g-import-not-at-top
    import seqio  # pylint: disable=g-import-not-at-top
    for name in ("mesh_eval_dataset_fn.mixture_or_task_name",
                 "mesh_train_dataset_fn.mixture_or_task_name"):
      value = configs.query(name)
      if isinstance(value, gin.config.ConfigurableReference):
        if value.evaluate and value.configurable.name == "corpus_task":
          from primer_mtf.data.tasks import corpus_task  # pylint: disable=g-import-not-at-top
          return corpus_task()
        self.refuse(f"its task is @{value.configurable.name}(), which primer-mtf "
                    "cannot evaluate; evaluate it with t5_mesh_transformer")
      if isinstance(value, str):
        if value not in seqio.TaskRegistry.names() | seqio.MixtureRegistry.names():
          self.refuse(f"its task {value} is not registered here; evaluate it with "
                      "t5_mesh_transformer and the --module_import that defines it")
        return value
    self.refuse("its operative config names no task")

  def evaluate(self, split="validation", gin_params=(), max_batches=100, mesh=None,
               **follow):
    from primer_mtf.commands import evaluation  # pylint: disable=g-import-not-at-top
    self.configure(gin_params, mesh)
    task = self.eval_task()
    # the operative config holds what training used: the train task only
    configs.parse_files([], [f"mesh_eval_dataset_fn.mixture_or_task_name = {task!r}"])
    return evaluation.evaluate(self.model_dir, task, split, max_batches, **follow)
