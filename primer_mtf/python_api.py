"""T5's ``t5.models.MtfModel`` with primer-mtf's gin, and helpers where it surprises.

docs/python_api.md shows the whole flow; tests/test_python_api.py runs it. Three
things to know about ``MtfModel`` 0.9.4 (t5/models/mtf_model.py):

- Its constructor arguments, not ``utils.run.*``, set the batch, lengths, mesh,
  learning-rate schedule (Noam by default), optimizer and checkpoint interval:
  :func:`mtf_model` reads them from the parsed gin, so they are the run's. It
  passes the schedule no ``total_train_steps``, which mesh-tensorflow's schedules
  require: :func:`mtf_model` binds it.
- ``MtfModel.finetune`` parses the pretrained ``operative_config.gin`` *after*
  everything the caller parsed, so the pretrained values win: a prefix format
  (``Unitransformer.loss_on_targets_only``) silently turns back into delimited,
  and ``tpu_estimator_model_fn.init_variable_filter`` (the project restores all
  but Adafactor's slots) goes back to restoring the optimizer state.
  :func:`finetune` parses in the other order: the pretrained config, then the
  format and the caller's bindings.
- ``MtfModel.predict`` without ``vocabulary=`` reads T5's default vocabulary
  (``gs://t5-data/vocabs/cc_all.32000``), not the run's: pass
  ``t5.models.mesh_transformer.get_vocabulary(task)``.
- ``MtfModel.eval`` evaluates only tasks with ``metric_fns``: on the language
  model's task (it has none) it logs one INFO line and returns. Use
  :func:`evaluate` (the project's perplexity eval; it opens an ``MtfModel`` run as
  a ``t5_mesh_transformer`` run). On a text-to-text task it writes the targets into
  ``model_dir/{split}_eval`` without creating the folder: :func:`eval_task` makes
  it first.
"""

import os

import gin

from primer_mtf import configs
from primer_mtf.errors import UsageError

OPERATIVE_CONFIG = "operative_config.gin"


def configure(model="primer_ez", size="tiny", mesh="cpu", objective=configs.OBJECTIVE,
              gin_files=(), gin_params=()):
  """Parses a run's gin as ``primer-mtf train`` does, in place of any earlier one:
  the search paths (this package's gin/, mesh-tensorflow's, T5's), mesh-tensorflow's
  ``defaults.gin``, ``objectives/OBJECTIVE.gin``, ``models/MODEL.gin``,
  ``sizes/SIZE.gin``, ``meshes/MESH.gin``, then ``gin_files`` and ``gin_params``.
  Returns the files, in order."""
  return configs.parse(model, size, mesh, gin_files, gin_params, objective)


def _function(name):
  """The callable a ``@reference`` binding names (gin-configured), or None."""
  value = configs.query(name)
  if isinstance(value, gin.config.ConfigurableReference):
    return value.scoped_configurable_fn
  return value


def mtf_model(model_dir, train_steps=None, **overrides):
  """A ``t5.models.MtfModel`` on this host (``tpu=None``) whose constructor
  arguments are the parsed run's ``utils.run`` values; ``overrides`` win.

  The schedule gets ``total_train_steps`` (``train_steps``, by default
  ``utils.run.train_steps``) bound: ``utils.run`` binds it, ``MtfModel`` does not,
  and mesh-tensorflow's schedules require it."""
  import functools  # pylint: disable=g-import-not-at-top
  import t5.models  # pylint: disable=g-import-not-at-top
  schedule = _function("utils.run.learning_rate_schedule")
  if callable(schedule):
    schedule = functools.partial(
        schedule, total_train_steps=train_steps or configs.query("utils.run.train_steps"))
  kwargs = {
      "model_dir": model_dir, "tpu": None,
      "model_type": configs.query("utils.run.model_type", "lm"),
      "batch_size": ("sequences_per_batch", configs.batch_sequences()),
      "sequence_length": configs.sequence_length(),
      "mesh_shape": configs.mesh_shape(),
      "mesh_devices": configs.query("utils.run.mesh_devices"),
      "layout_rules": configs.layout_rules(),
      "learning_rate_schedule": schedule,
      "optimizer": _function("utils.run.optimizer"),
      "save_checkpoints_steps": configs.query("utils.run.save_checkpoints_steps", 5000),
  }
  kwargs.update(overrides)
  return t5.models.MtfModel(**kwargs)


def latest_step(model_dir):
  from primer_mtf.training import checkpoints  # pylint: disable=g-import-not-at-top
  steps = checkpoints.steps(model_dir)
  if not steps:
    raise ValueError(f"{model_dir} has no checkpoint")
  return max(steps)


def finetune(model_dir, task, finetune_steps, pretrained_model_dir, fmt="delimited",
             gin_params=(), pretrained_checkpoint_step=-1, learning_rate=1e-3,
             lengths=None, mesh=None, batch_size=None, **mtf_model_args):
  """``MtfModel.finetune`` with the configuration in the right order.

  Parses the pretrained ``operative_config.gin``, then ``gin/finetune/FMT.gin``
  (``delimited``, ``prefix``, or ``encoder_decoder`` for ``bi/*``), then the
  project's fine-tuning bindings for ``task`` (``kjv_book``, a folder of
  .jsonl/.tsv, or a registered seqio task; the lengths follow the pretrained
  one unless ``lengths`` is given) and ``gin_params``; then trains
  ``finetune_steps`` steps past the pretrained checkpoint into ``model_dir``.
  Adafactor's slots start afresh as in ``primer-mtf finetune`` (bind
  ``tpu_estimator_model_fn.init_variable_filter = ''`` to restore them). Returns
  the ``MtfModel``, configured for eval and predict on ``model_dir``, and the
  name the task is registered under (``model.eval`` takes it).
  """
  from primer_mtf.commands import finetune as finetune_lib  # pylint: disable=g-import-not-at-top
  from primer_mtf.data import text2text  # pylint: disable=g-import-not-at-top
  step = (latest_step(pretrained_model_dir) if pretrained_checkpoint_step == -1
          else pretrained_checkpoint_step)
  checkpoint = os.path.join(pretrained_model_dir, f"model.ckpt-{step}")
  configs.clear()
  # mesh-tensorflow's defaults first: they fill what an MtfModel run passed in
  # code and its operative config lacks (layout rules, batch, optimizer)
  configs.parse_files([configs.MTF_DEFAULTS,
                       os.path.join(pretrained_model_dir, OPERATIVE_CONFIG)]
                      + ([configs.resolve("meshes", mesh)] if mesh else []),
                      ["corpus_task.data_cache = None",
                       # an MtfModel run's config does not bind it (T5 binds it in code)
                       "utils.run.vocabulary = "
                       "@t5.models.mesh_transformer.get_vocabulary()"]
                      + ([f"utils.run.batch_size = {batch_size!r}"] if batch_size
                         else []))
  if configs.query("utils.run.sequence_length") is None and not lengths:
    raise UsageError(f"{pretrained_model_dir}'s operative config does not hold its "
                     "sequence length (a run of MtfModel passes it in code); give "
                     "lengths={'inputs': N, 'targets': M}")
  pretrained_length = (configs.sequence_length()["inputs"] if not lengths
                       else lengths["inputs"] + lengths["targets"])
  configs.parse_files([configs.resolve("finetune", fmt)])
  task_name = text2text.register(task, text2text.pretrained_vocabulary())
  record = {"task": task, "checkpoint": checkpoint, "pretrained_step": step,
            "finetune_steps": finetune_steps, "learning_rate": learning_rate,
            "lengths": lengths, "cache": None}
  configs.parse_files([], finetune_lib.bindings(record, fmt, pretrained_length)
                      + list(gin_params))
  model = mtf_model(model_dir, **mtf_model_args)
  model.train(task_name, step + finetune_steps, init_checkpoint=checkpoint)
  return model, task_name


def evaluate(model_dir, task=None, split="validation", max_batches=100, gin_params=(),
             sequence_length=None, batch_size=None, mesh=None, model_type=None):
  """The language model's loss, perplexity and token accuracy at every checkpoint
  of ``model_dir`` (a run of primer-mtf, ``MtfModel`` or ``t5_mesh_transformer``),
  which ``MtfModel.eval`` skips: ``primer-mtf eval``'s own. Returns its table
  (a row a checkpoint) and writes ``eval_SPLIT.json`` and a plot there.

  ``task``, ``model_type``, ``sequence_length``, ``batch_size`` and ``mesh`` (a
  ``--mesh`` name):
  those of an ``MtfModel`` run, which its operative config does not hold
  (``MtfModel`` passes them in code, not through gin); give them as its
  constructor was given them."""
  from primer_mtf.commands import kinds  # pylint: disable=g-import-not-at-top
  given = {"mesh_eval_dataset_fn.mixture_or_task_name": task,
           "get_vocabulary.mixture_or_task_name": task,
           "utils.run.model_type": model_type,
           "utils.run.sequence_length": sequence_length,
           "utils.run.batch_size": batch_size}
  gin_params = [f"{k} = {v!r}" for k, v in given.items() if v] + list(gin_params)
  _, _, table = kinds.open_run(model_dir).evaluate(split, gin_params, max_batches,
                                                   mesh)
  return table


def eval_task(model, task, checkpoint_steps=-1, split="validation", **eval_args):
  """``model.eval`` on a task with metrics (a fine-tuning task), with the summary
  folder it writes into made first; returns that folder."""
  summary_dir = eval_args.pop("summary_dir", None) or os.path.join(
      model._model_dir, f"{split}_eval")  # pylint: disable=protected-access
  os.makedirs(summary_dir, exist_ok=True)
  model.eval(task, checkpoint_steps=checkpoint_steps, summary_dir=summary_dir,
             split=split, **eval_args)
  return summary_dir
