"""The ``primer-mtf`` command: argument parsing and dispatch, nothing else.

What the commands do lives with their role: runs in ``commands/runs.py``, eval in
``commands/evaluation.py``, plans in ``planning/planner.py``, vocabularies in
``data/``.
"""

import argparse
import contextlib
import errno
import json
import logging
import math
import os
import re
import sys
import threading


class _Parser(argparse.ArgumentParser):
  """argparse with a usage error in one line, as every other error here."""

  def error(self, message):
    # a type that names its flag ("--top_k 0 must be at least 1") needs no
    # "argument --top_k: " before it
    message = re.sub(r"^argument (\S+): (\1 )", r"\2", message)
    sys.stderr.write(f"primer-mtf: error: {message} (see {self.prog} --help)\n")
    sys.exit(2)


# The largest count (steps, batches, sizes, shards) a flag takes: 2**31-1, the
# largest int32. Numbers past it are typos, not plans: vocabulary ids, lengths and
# batch sizes are int32 in the graph, and 2**31 steps at one step a millisecond
# would take 25 days. Without the ceiling `--train_steps 100000000000000000000`
# started training.
MAX_COUNT = 2**31 - 1


def _whole_number(text, flag=None):
  try:
    return int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(
        f"{flag + ' ' if flag else ''}{text!r} is not a whole number") from None


def _positive_int(text):
  """An argparse type: an integer of at least 1 and at most MAX_COUNT."""
  value = _whole_number(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"{value} is not positive; give at least 1")
  if value > MAX_COUNT:
    raise argparse.ArgumentTypeError(f"{value} is too large; give at most "
                                     f"{MAX_COUNT} (2**31-1)")
  return value


def _int_flag(flag, minimum):
  """An argparse type for ``flag``: an integer in [minimum, MAX_COUNT], refused
  with a message that names the flag."""
  def convert(text):
    value = _whole_number(text, flag)
    if value < minimum:
      raise argparse.ArgumentTypeError(
          f"{flag} {value} is negative" if minimum == 0
          else f"{flag} {value} must be at least {minimum}")
    if value > MAX_COUNT:
      raise argparse.ArgumentTypeError(f"{flag} {value} is too large; give at "
                                       f"most {MAX_COUNT} (2**31-1)")
    return value
  return convert


def _float_flag(flag, zero_allowed, hint=""):
  """An argparse type for ``flag``: a finite number, positive or (with
  ``zero_allowed``) at least 0. NaN and infinities are refused: float() takes
  them, and they would reach the graph."""
  def convert(text):
    try:
      value = float(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"{flag} {text!r} is not a number") from None
    if not math.isfinite(value):
      raise argparse.ArgumentTypeError(f"{flag} {text} is not a finite number"
                                       f"{hint}")
    if value < 0 or (value == 0 and not zero_allowed):
      raise argparse.ArgumentTypeError(
          f"{flag} {text} is negative{hint}" if value < 0
          else f"{flag} {text} must be more than 0{hint}")
    return value
  return convert


def _dangling(path):
  return os.path.islink(path) and not os.path.exists(path)


def _folder_flag(flag, may_exist_as_file=False):
  """An argparse type for a folder: not empty, not an existing file, not a
  symlink to nothing (buckets are not checked here)."""
  def convert(text):
    if not text.strip():
      raise argparse.ArgumentTypeError(f"{flag} is empty; give a folder")
    if "://" in text:
      return text
    if _dangling(text):
      raise argparse.ArgumentTypeError(
          f"{flag} {text} is a symlink to {os.readlink(text)}, which does not "
          "exist; give a folder, or make the symlink's target first")
    if not may_exist_as_file and os.path.exists(text) and not os.path.isdir(text):
      raise argparse.ArgumentTypeError(f"{flag} {text} is a file; give a folder")
    return text
  return convert


def _file_flag(flag):
  """An argparse type for a file to write: not empty, not a folder."""
  def convert(text):
    if not text.strip():
      raise argparse.ArgumentTypeError(f"{flag} is empty; give a file name")
    if os.path.isdir(text):
      raise argparse.ArgumentTypeError(
          f"{flag} {text} is a folder; give a file name, e.g. "
          f"{os.path.join(text, 'vocabulary.model')}")
    return text
  return convert


def _add_run_flags(p, required_model_dir=True):
  p.add_argument("--model_dir", required=required_model_dir,
                 type=_folder_flag("--model_dir"),
                 help="checkpoints, operative config, events and eval results")
  p.add_argument("--model", default="transformer", help="a file of gin/models/")
  p.add_argument("--size", default="tiny", help="a file of gin/sizes/")
  p.add_argument("--mesh", default="cpu", help="a file of gin/meshes/")
  p.add_argument("--gin_file", action="append", default=[],
                 help="more gin files, parsed after the shortcuts")
  p.add_argument("--gin_param", action="append", default=[],
                 help="gin bindings, parsed last, e.g. utils.run.train_steps=100")
  _add_corpus_flags(p)


def _add_corpus_flags(p):
  p.add_argument("--corpus", default="kjv",
                 help="'kjv' (embedded), 'pydocs' (the Python documentation the "
                      "install carries), a text file (a document a line), a folder "
                      "(a document a file), or a TFDS corpus of "
                      "primer_mtf/data/corpus.py (c4, lm1b, pg19: prepared data)")
  p.add_argument("--vocab_size", type=_positive_int, default=4096)
  p.add_argument("--vocabulary", default=None,
                 help="an existing SentencePiece model instead of training one")
  p.add_argument("--tfds_data_dir", default=None)


def parser():
  top = _Parser(
      prog="primer-mtf", description="Train and evaluate Primer language models "
      "in Mesh TensorFlow through T5.")
  sub = top.add_subparsers(dest="command", required=True)
  train = sub.add_parser("train", help="train a model (resumes an existing run)")
  _add_run_flags(train)
  train.add_argument("--train_steps", type=_positive_int, default=None)
  train.add_argument("--objective", default="packed_lm",
                     help="gin/objectives/NAME.gin: packed_lm (EOS after each "
                          "document, the default), lm_as_released (the "
                          "release's 65,536-token chunks, no separators) or, for "
                          "bi/* models, span_corruption (T5's)")
  train.add_argument("--seed", type=int, default=None,
                     help="fixes the weights' initial values and the data order "
                          "(default 1234): the same seed and flags give the same "
                          "checkpoints")
  train.add_argument("--cache", default=None, metavar="DIR",
                     help="read the pre-tokenized cache that `primer-mtf cache` "
                          "built in DIR instead of tokenizing while training "
                          "(needed on multi-host TPU slices)")
  cache = sub.add_parser("cache", help="pre-tokenize a task with seqio's Beam job "
                         "(DirectRunner here, Dataflow for C4), for --cache")
  cache.add_argument("--output", required=True, metavar="DIR",
                     type=_folder_flag("--output"),
                     help="the cache folder (a bucket path for Dataflow)")
  _add_corpus_flags(cache)
  cache.add_argument("--objective", default="packed_lm",
                     help="gin/objectives/NAME.gin, as train's --objective")
  cache.add_argument("--task", default=None,
                     help="cache this fine-tuning task (as finetune's --task) on "
                          "the corpus's vocabulary instead of the LM task")
  cache.add_argument("--gin_param", action="append", default=[])
  cache.add_argument("--runner", default="direct", choices=["direct", "dataflow"],
                     help="direct: Beam's DirectRunner on this machine; dataflow: "
                          "Google Cloud Dataflow (needs the Dataflow venv, see "
                          "the README)")
  cache.add_argument("--min_shards", type=_positive_int, default=64)
  cache.add_argument("--overwrite", action="store_true",
                     help="build again over a complete cache of the task")
  cache.add_argument("--project", default=None, help="Dataflow: the GCP project")
  cache.add_argument("--region", default=None, help="Dataflow: e.g. us-central2")
  cache.add_argument("--temp_location", default=None,
                     help="Dataflow: gs://BUCKET/dataflow/tmp")
  cache.add_argument("--max_num_workers", type=_positive_int, default=None)
  cache.add_argument("--worker_image", default=None,
                     help="Dataflow: the workers' container image, built from "
                          "launch/dataflow/Dockerfile")
  cache.add_argument("--dry_run", action="store_true",
                     help="print the task and the Beam options; run nothing")
  ev = sub.add_parser("eval", help="perplexity eval of every checkpoint of a run")
  ev.add_argument("--model_dir", required=True, type=_folder_flag("--model_dir"))
  ev.add_argument("--split", default="validation")
  ev.add_argument("--mesh", default=None, help="evaluate on another mesh")
  ev.add_argument("--gin_param", action="append", default=[])
  ev.add_argument("--max_batches", type=_positive_int, default=100)
  ev.add_argument("--follow", action="store_true",
                  help="evaluate checkpoints as training writes them; stop when "
                       "the run's last step is evaluated")
  ev.add_argument("--poll_seconds", type=_float_flag("--poll_seconds", False),
                  default=30.0)
  ev.add_argument("--timeout_seconds", default=3600.0,
                  type=_float_flag("--timeout_seconds", False),
                  help="with --follow: give up after this long without a new "
                       "checkpoint")
  plan = sub.add_parser("plan", help="parameters, FLOPs and memory per core of a "
                        "run, and whether its layout divides and fits")
  plan.add_argument("--model_dir", default=None, type=_folder_flag("--model_dir"),
                    help="plan this run as it is "
                    "configured, its vocabulary included (any kind of run); "
                    "--model, --size and --vocab_size then do not apply")
  plan.add_argument("--model", default=None, help="default: transformer")
  plan.add_argument("--size", default=None, help="default: tiny")
  plan.add_argument("--mesh", default=None, help="default: one device (cpu), or "
                    "the run's own mesh with --model_dir")
  plan.add_argument("--vocab_size", type=_positive_int, default=None,
                    help="embedding rows (default: T5's vocabulary, 32,128)")
  plan.add_argument("--gin_param", action="append", default=[])
  plan.add_argument("--json", action="store_true", help="machine-readable output")
  ft = sub.add_parser("finetune", help="fine-tune a pretrained run on a "
                      "text-to-text task, T5's way (eval decodes with its metric)")
  ft.add_argument("--pretrained_dir", required=True,
                  type=_folder_flag("--pretrained_dir"))
  ft.add_argument("--task", required=True,
                  help="kjv_book, a folder of train/validation .jsonl or .tsv, or "
                       "a registered seqio task (e.g. glue_cola_v002)")
  ft.add_argument("--model_dir", required=True, type=_folder_flag("--model_dir"))
  ft.add_argument("--finetune_steps", type=_positive_int, default=None,
                  help="steps after the pretrained one (default: the pretraining "
                       "configuration's train_steps)")
  ft.add_argument("--format", default=None, help="a file of gin/finetune/: for "
                  "decoder-only checkpoints delimited (loss on inputs and targets, "
                  "the default) or prefix (targets only); encoder_decoder for bi/*")
  ft.add_argument("--learning_rate", type=_float_flag("--learning_rate", False),
                  default=1e-3)
  ft.add_argument("--checkpoint_step", type=_int_flag("--checkpoint_step", 0),
                  default=None,
                  help="pretrained checkpoint (default: the latest)")
  ft.add_argument("--model", default=None, help="default: the pretrained one")
  ft.add_argument("--mesh", default=None, help="default: the pretrained one")
  ft.add_argument("--inputs_length", type=_positive_int, default=None)
  ft.add_argument("--targets_length", type=_positive_int, default=None)
  ft.add_argument("--gin_param", action="append", default=[])
  ft.add_argument("--cache", default=None, metavar="DIR",
                  help="read the task from the cache `primer-mtf cache --task` "
                       "built in DIR")
  cmp = sub.add_parser("compare", help="the paper's speedup: compute each run "
                       "needs to reach the first (baseline) run's final loss")
  cmp.add_argument("model_dirs", nargs="*", metavar="RUN_DIR",
                   type=_folder_flag("RUN_DIR"),
                   help="evaluated runs, the baseline first")
  cmp.add_argument("--output", default=".", type=_folder_flag("--output"), help="where compare.json and "
                   "compare.png go (with --train, also the runs)")
  cmp.add_argument("--group", action="store_true",
                   help="group runs by model: mean and spread over seeds")
  cmp.add_argument("--split", default="validation")
  cmp.add_argument("--train", action="store_true",
                   help="train --models first, one after another (same data and budget)")
  cmp.add_argument("--models", nargs="+", default=["transformer", "primer_ez"])
  cmp.add_argument("--seeds", type=_positive_int, default=1)
  cmp.add_argument("--vary", default="both", choices=["data", "init", "both"],
                   help="with --train: what the seeds change, the training data "
                        "order, the initial weights or both (default)")
  cmp.add_argument("--size", default="tiny")
  cmp.add_argument("--mesh", default="cpu")
  cmp.add_argument("--corpus", default="kjv")
  cmp.add_argument("--objective", default=None)
  cmp.add_argument("--train_steps", type=_positive_int, default=None)
  cmp.add_argument("--evaluations", type=_positive_int, default=10,
                   help="with --train: checkpoints (evaluations) per run")
  cmp.add_argument("--gin_param", action="append", default=[])
  bench = sub.add_parser("bench", help="what Primer costs and buys here: step "
                         "overhead, utilisation, input pipeline, decoding, "
                         "sharding, memory, as ratios measured side by side")
  bench.add_argument("--quick", action="store_true",
                     help="small sizes and few rounds: minutes")
  bench.add_argument("--out", default="bench", type=_folder_flag("--out"), help="where bench.json, bench.md "
                     "and bench.png go")
  bench.add_argument("--only", nargs="+", default=None,
                     choices=("step", "utilisation", "profile", "pipeline",
                              "decode", "sharding", "memory", "quality"),
                     help="run only these benchmarks")
  bench.add_argument("--memory_sizes", nargs="+", default=None,
                     help="rerun benchmarks/planner_memory.py at these sizes "
                          "(default: read its committed record)")
  smp, scr = _add_sample_and_score_parsers(sub)
  vocab = sub.add_parser("vocab", help="train (or find cached) a SentencePiece model")
  _add_corpus_flags(vocab)
  vocab.add_argument("--output", default=None, type=_file_flag("--output"), help="write the model here")
  for command in (train, cache, ev, plan, ft, cmp, vocab, smp, scr, bench):
    command.add_argument("-v", "--verbose", action="store_true",
                         help="show everything TensorFlow and mesh-tensorflow log")
  return top


def _set_verbosity(verbose):
  """tf.logging (mesh-tensorflow's and the estimator's INFO and WARNING lines)
  only with -v; errors always."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  tf.logging.set_verbosity(tf.logging.INFO if verbose else tf.logging.ERROR)


def train(args):
  from primer_mtf.commands import runs  # pylint: disable=g-import-not-at-top
  gin_param = list(args.gin_param)
  if args.train_steps is not None:
    gin_param.append(f"utils.run.train_steps = {args.train_steps}")
  record = runs.make_record(args.model, args.size, args.mesh, args.corpus,
                            args.vocab_size, args.vocabulary, args.tfds_data_dir,
                            args.gin_file, gin_param, args.objective,
                            runs.DEFAULT_SEED if args.seed is None else args.seed,
                            args.cache)
  runs.train(args.model_dir, record)
  return 0


def cache(args):
  from primer_mtf.commands import caching  # pylint: disable=g-import-not-at-top
  caching.cache(args)
  return 0


def _eval_line(row):
  if "loss" not in row:   # a fine-tuning run: its task's metrics
    return (f"[eval] step {row['step']} " + " ".join(
        f"{k} {v:.4f}" for k, v in row.items() if k not in ("step", "num_examples"))
            + (f" ({int(row['num_examples'])} examples)" if "num_examples" in row
               else ""))
  return (f"[eval] step {row['step']} loss {row['loss']:.4f} "
          f"perplexity {row['perplexity']:.2f} "
          f"token_accuracy {row['token_accuracy']:.4f}")


def evaluate(args):
  from primer_mtf.commands import kinds  # pylint: disable=g-import-not-at-top
  new = []

  def report(row):
    new.append(row["step"])
    if args.follow:
      print(_eval_line(row), flush=True)

  run = kinds.open_run(args.model_dir)
  _check_split(run, args.split)
  json_path, png_path, table = run.evaluate(
      args.split, args.gin_param, args.max_batches, args.mesh, follow=args.follow,
      poll_seconds=args.poll_seconds, timeout_seconds=args.timeout_seconds,
      report=report)
  if not args.follow:
    for row in table:
      print(_eval_line(row))
  print(f"[eval] {len(new)} checkpoints evaluated now, "
        f"{len(table) - len(new)} evaluated before")
  print(f"[eval] wrote {json_path} and {png_path}")
  return 0


def _check_split(run, split):
  """primer-mtf's corpora and task folders have a train and a validation split
  (data/splits.py, data/text2text.py); another --split is refused before any
  graph is built. Runs of t5_mesh_transformer and registered seqio tasks keep
  their own splits, checked where the data is read."""
  from primer_mtf.commands import runs  # pylint: disable=g-import-not-at-top
  from primer_mtf.commands import finetune as finetune_lib  # pylint: disable=g-import-not-at-top
  from primer_mtf.data import splits  # pylint: disable=g-import-not-at-top
  from primer_mtf.data import text2text  # pylint: disable=g-import-not-at-top
  from primer_mtf.errors import UsageError  # pylint: disable=g-import-not-at-top
  if isinstance(run, runs.PretrainingRun):
    data = "its corpus"
  elif isinstance(run, finetune_lib.FinetuningRun) and (
      run.record.get("task") == text2text.KJV_BOOK
      or os.path.isdir(str(run.record.get("task")))):
    data = f"its task {run.record['task']}"
  else:
    return
  if split not in splits.SPLITS:
    raise UsageError(f"--split {split}: {data} has only the splits "
                     f"{' and '.join(splits.SPLITS)}; give one of them")


def finetune(args):
  from primer_mtf.commands import finetune as finetune_lib  # pylint: disable=g-import-not-at-top
  lengths = None
  if args.inputs_length or args.targets_length:
    from primer_mtf.errors import UsageError  # pylint: disable=g-import-not-at-top
    if not (args.inputs_length and args.targets_length):
      raise UsageError("give both --inputs_length and --targets_length")
    lengths = {"inputs": args.inputs_length, "targets": args.targets_length}
  record = finetune_lib.make_record(
      args.pretrained_dir, args.task, args.format, args.model, args.mesh,
      args.checkpoint_step, args.finetune_steps, args.learning_rate, lengths,
      args.gin_param, args.cache)
  finetune_lib.train(args.model_dir, record)
  return 0


def compare(args):
  from primer_mtf.commands import compare as compare_lib  # pylint: disable=g-import-not-at-top
  from primer_mtf.errors import UsageError  # pylint: disable=g-import-not-at-top
  if args.train:
    if args.model_dirs:
      raise UsageError("give either RUN_DIRs or --train with --models, not both")
    summary, json_path, png_path = compare_lib.train_and_compare(
        args.models, args.seeds, args.output, args.size, args.mesh, args.corpus,
        args.train_steps, args.evaluations, args.gin_param, args.objective,
        vary=args.vary)
  else:
    summary, json_path, png_path = compare_lib.compare(
        args.model_dirs, args.output, args.group, args.split)
  for line in compare_lib.format_summary(summary):
    print(line)
  print(f"[compare] wrote {json_path} and {png_path}")
  return 0


def plan(args):
  from primer_mtf.planning import planner  # pylint: disable=g-import-not-at-top
  from primer_mtf.errors import UsageError  # pylint: disable=g-import-not-at-top
  if args.model_dir:
    given = [f for f in ("model", "size", "vocab_size") if getattr(args, f)]
    if given:
      raise UsageError(f"--{given[0]} does not apply with --model_dir: a run's "
                       "configuration is its own")
    from primer_mtf.commands import kinds  # pylint: disable=g-import-not-at-top
    result = planner.plan_run(kinds.open_run(args.model_dir), args.mesh,
                              args.gin_param)
  else:
    result = planner.plan(args.model or "transformer", args.size or "tiny",
                          args.mesh or "cpu", args.vocab_size, args.gin_param)
  # the first error is the command's one error line (stderr), not also the plan's
  skip = 1 if result["errors"] else 0
  print(json.dumps(result, indent=1) if args.json
        else planner.format_plan(result, skip_errors=skip))
  if result["errors"]:
    raise UsageError(result["errors"][0])
  return 0


def vocab(args):
  import os  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  from primer_mtf.errors import UsageError  # pylint: disable=g-import-not-at-top
  from primer_mtf.data import corpus  # pylint: disable=g-import-not-at-top
  from primer_mtf.data import tasks  # pylint: disable=g-import-not-at-top
  folder = os.path.dirname(os.path.abspath(args.output or "."))
  if args.output and not os.path.isdir(folder):
    raise UsageError(f"--output {args.output}: folder {folder} does not exist")
  path = tasks.trained_vocabulary(corpus.resolve(args.corpus, args.tfds_data_dir),
                                  args.vocab_size)
  if args.output:
    shutil.copyfile(path, args.output)
    path = args.output
  print(path)
  return 0


def bench(args):
  from primer_mtf import configs  # pylint: disable=g-import-not-at-top
  from primer_mtf.bench import report, runner  # pylint: disable=g-import-not-at-top
  from primer_mtf.errors import UsageError  # pylint: disable=g-import-not-at-top
  unknown = [s for s in args.memory_sizes or () if s not in configs.names("sizes")]
  if unknown:
    raise UsageError(f"unknown --memory_sizes {unknown[0]!r}; choose from: "
                     f"{', '.join(configs.names('sizes'))}")
  command = ["primer-mtf bench"] + ["--quick"] * args.quick + ["--out", args.out]
  if args.only:
    command += ["--only", *args.only]
  if args.memory_sizes:
    command += ["--memory_sizes", *args.memory_sizes]
  result, paths = runner.run(args.quick, args.out, args.only, args.memory_sizes,
                             " ".join(command))
  print(report.markdown(result), end="")
  print(f"[bench] wrote {', '.join(paths)}")
  return 0


def _add_sample_and_score_parsers(sub):
  smp = sub.add_parser("sample", help="continue prompts from a checkpoint (greedy, "
                       "temperature or top-k sampling)")
  scr = sub.add_parser("score", help="zero-, one- or few-shot accuracy of a "
                       "checkpoint on a task")
  for p in (smp, scr):
    p.add_argument("--model_dir", required=True, type=_folder_flag("--model_dir"))
    p.add_argument("--checkpoint_step", type=_int_flag("--checkpoint_step", 0),
                   default=None,
                   help="default: the latest checkpoint")
    p.add_argument("--mesh", default=None, help="run on another mesh")
    p.add_argument("--gin_param", action="append", default=[])
  smp.add_argument("--prompt", action="append", required=True,
                   help="text to continue; repeat for a batch")
  smp.add_argument("--max_new_tokens", type=_int_flag("--max_new_tokens", 1),
                   default=32)
  smp.add_argument("--temperature", default=0.0, help="0: greedy",
                   type=_float_flag("--temperature", True, "; 0 is greedy"))
  smp.add_argument("--top_k", type=_int_flag("--top_k", 1), default=None,
                   help="sample from the k most likely tokens")
  smp.add_argument("--seed", type=int, default=0)
  smp.add_argument("--num_samples", type=_int_flag("--num_samples", 1), default=1,
                   help="samples per prompt")
  smp.add_argument("--json", action="store_true",
                   help="one JSON object a sample: ids, text, why it stopped")
  scr.add_argument("--task", action="append", required=True,
                   help="kjv_ending, kjv_last_word, super_glue/NAME, super_glue "
                        "(all of them) or a JSONL file; repeat for several")
  scr.add_argument("--shots", type=_int_flag("--shots", 0), default=1)
  scr.add_argument("--seed", type=int, default=0, help="draws the shots")
  scr.add_argument("--limit", type=_positive_int, default=None,
                   help="score only the first N examples of each task")
  scr.add_argument("--normalize", default=None, choices=("sum", "mean", "pmi"),
                   help="rank choices by summed or per-token log-likelihood, or "
                        "by how much the query raises it (default: as the task "
                        "says)")
  scr.add_argument("--train_file", default=None,
                   help="JSONL task: where its shots come from (default: the "
                        "task file itself, never the query)")
  scr.add_argument("--tfds_data_dir", default=None,
                   help="prepared TFDS data for super_glue (default: the run's)")
  return smp, scr


def sample(args):
  from primer_mtf.commands import sampling  # pylint: disable=g-import-not-at-top
  _, results = sampling.sample(
      args.model_dir, args.prompt, args.max_new_tokens, args.temperature,
      args.top_k, args.seed, args.num_samples, args.mesh, args.checkpoint_step,
      args.gin_param)
  for r in results:
    print(json.dumps(r) if args.json else r["full_text"])
  return 0


def score(args):
  from primer_mtf.commands import scoring  # pylint: disable=g-import-not-at-top
  _, paths = scoring.score(
      args.model_dir, args.task, args.shots, args.seed, args.limit, args.normalize,
      args.mesh, args.checkpoint_step, args.train_file, args.tfds_data_dir,
      args.gin_param)
  print(f"[score] wrote {', '.join(paths)}")
  return 0


# What a stopped command leaves, for the line Ctrl-C prints.
_WHAT_SURVIVES = {
    "train": "the run keeps every checkpoint written so far; run the same command "
             "to resume from the newest",
    "finetune": "the run keeps every checkpoint written so far; run the same "
                "command to resume from the newest",
    "eval": "checkpoints evaluated so far keep their results; eval again to go on",
    "compare": "the runs are untouched; with --train, each run keeps its "
               "checkpoints and the same command resumes them",
    "cache": "a cache is complete only when the command finishes; run it again",
}

_FULL_DISK_ERRNOS = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def _full_disk(e):
  """Whether ``e`` (an exception or a message) is a full disk or quota: an
  OSError with its errno, or TensorFlow's error for one (its message says so;
  its errno is not kept)."""
  if isinstance(e, OSError) and e.errno in _FULL_DISK_ERRNOS:
    return True
  return "No space left on device" in str(e) or "Disk quota exceeded" in str(e)


def _full_disk_line(e, args):
  path = getattr(e, "filename", None)
  if not path:
    found = re.search(r"(/[^\s:;,'\"]+)", str(e))
    path = found.group(1) if found else None
  where = f" writing {path}" if path else ""
  model_dir = getattr(args, "model_dir", None)
  removed = []
  if args.command in ("train", "finetune") and model_dir:
    from primer_mtf import files  # pylint: disable=g-import-not-at-top
    removed = files.remove_partial_writes(model_dir)   # the run's lock was ours
  cleaned = (f" (removed {len(removed)} partial file{'s' * (len(removed) > 1)} it "
             f"left: {', '.join(removed)})" if removed else "")
  resume = ("; the run resumes from its newest whole checkpoint"
            if args.command in ("train", "finetune") else "")
  return (f"primer-mtf: error: the disk is full{where}{cleaned}; free space and "
          f"run the command again{resume}")


class _DropFullDiskLogs(logging.Filter):
  """TensorFlow's events writer logs its own full-disk error before the command
  fails with it; the command's one line says it once."""

  def filter(self, record):
    error = record.exc_info[1] if record.exc_info else None
    return not (_full_disk(record.getMessage()) or (error and _full_disk(error)))


@contextlib.contextmanager
def _full_disk_reported_once():
  """While a command runs, a full disk met by a background thread (TensorFlow's
  events writer) is not printed as a thread traceback: the writer re-raises it in
  the command, which reports it in one line."""
  previous = threading.excepthook

  def hook(hook_args):
    if not _full_disk(hook_args.exc_value):
      previous(hook_args)

  quiet_logs = _DropFullDiskLogs()
  loggers = [logging.getLogger(), logging.getLogger("tensorflow")]
  threading.excepthook = hook
  for logger in loggers:
    logger.addFilter(quiet_logs)
  try:
    yield
  finally:
    threading.excepthook = previous
    for logger in loggers:
      logger.removeFilter(quiet_logs)


def main(argv=None):
  """The command; ``argv=None`` is a real command line (its stderr is filtered)."""
  try:   # before TensorFlow loads: --help and a refused value are instant
    args = parser().parse_args(argv)
  except SystemExit as e:   # argparse's --help (0) and usage errors (2), returned
    return e.code           # as every other exit status is
  try:
    with _full_disk_reported_once():
      return _run(args, argv)
  except KeyboardInterrupt:
    survives = _WHAT_SURVIVES.get(args.command, "run the command again")
    print(f"primer-mtf: stopped by Ctrl-C; {survives}", file=sys.stderr)
    return 130
  except Exception as e:  # pylint: disable=broad-except
    if not _full_disk(e):
      raise
    print(_full_disk_line(e, args), file=sys.stderr)
    return 2


# Commands that load the stack and then work for a while: in a terminal each says
# so at once (loading TensorFlow, mesh-tensorflow and T5 takes 10-25 s on 2
# cores). Not into a pipe or a file, where a refused command's stderr is its one
# error line and nothing else.
_SAYS_IT_STARTED = ("train", "finetune", "eval", "score", "sample", "cache")


def _run(args, argv):
  if args.command in _SAYS_IT_STARTED and sys.stderr.isatty():
    print(f"[{args.command}] starting: loading TensorFlow and mesh-tensorflow",
          file=sys.stderr, flush=True)
  import primer_mtf  # pylint: disable=g-import-not-at-top
  primer_mtf.load()
  from primer_mtf import quiet  # pylint: disable=g-import-not-at-top
  from primer_mtf.errors import UsageError  # pylint: disable=g-import-not-at-top
  if argv is None:
    quiet.filter_native_stderr()
  _set_verbosity(args.verbose)
  try:
    return {"train": train, "eval": evaluate, "plan": plan, "compare": compare,
            "finetune": finetune, "bench": bench, "cache": cache,
            "vocab": vocab, "sample": sample, "score": score}[args.command](args)
  except UsageError as e:
    print(f"primer-mtf: error: {str(e).splitlines()[0]}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
