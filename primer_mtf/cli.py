"""The ``primer-mtf`` command: argument parsing and dispatch, nothing else.

What the commands do lives with their role: runs in ``commands/runs.py``, eval in
``commands/evaluation.py``, plans in ``planning/planner.py``, vocabularies in
``data/``.
"""

import argparse
import json
import sys


class _Parser(argparse.ArgumentParser):
  """argparse with a usage error in one line, as every other error here."""

  def error(self, message):
    sys.stderr.write(f"primer-mtf: error: {message} (see {self.prog} --help)\n")
    sys.exit(2)


def _positive_int(text):
  """An argparse type: an integer of at least 1."""
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"{value} is not positive; give at least 1")
  return value


def _add_run_flags(p, required_model_dir=True):
  p.add_argument("--model_dir", required=required_model_dir,
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
  ev.add_argument("--model_dir", required=True)
  ev.add_argument("--split", default="validation")
  ev.add_argument("--mesh", default=None, help="evaluate on another mesh")
  ev.add_argument("--gin_param", action="append", default=[])
  ev.add_argument("--max_batches", type=_positive_int, default=100)
  ev.add_argument("--follow", action="store_true",
                  help="evaluate checkpoints as training writes them; stop when "
                       "the run's last step is evaluated")
  ev.add_argument("--poll_seconds", type=float, default=30.0)
  ev.add_argument("--timeout_seconds", type=float, default=3600.0,
                  help="with --follow: give up after this long without a new "
                       "checkpoint")
  plan = sub.add_parser("plan", help="parameters, FLOPs and memory per core of a "
                        "run, and whether its layout divides and fits")
  plan.add_argument("--model_dir", default=None, help="plan this run as it is "
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
  ft.add_argument("--pretrained_dir", required=True)
  ft.add_argument("--task", required=True,
                  help="kjv_book, a folder of train/validation .jsonl or .tsv, or "
                       "a registered seqio task (e.g. glue_cola_v002)")
  ft.add_argument("--model_dir", required=True)
  ft.add_argument("--finetune_steps", type=_positive_int, default=None,
                  help="steps after the pretrained one (default: the pretraining "
                       "configuration's train_steps)")
  ft.add_argument("--format", default=None, help="a file of gin/finetune/: for "
                  "decoder-only checkpoints delimited (loss on inputs and targets, "
                  "the default) or prefix (targets only); encoder_decoder for bi/*")
  ft.add_argument("--learning_rate", type=float, default=1e-3)
  ft.add_argument("--checkpoint_step", type=int, default=None,
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
                   help="evaluated runs, the baseline first")
  cmp.add_argument("--output", default=".", help="where compare.json and "
                   "compare.png go (with --train, also the runs)")
  cmp.add_argument("--group", action="store_true",
                   help="group runs by model: mean and spread over seeds")
  cmp.add_argument("--split", default="validation")
  cmp.add_argument("--train", action="store_true",
                   help="train --models side by side first (same data and budget)")
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
  bench.add_argument("--out", default="bench", help="where bench.json, bench.md "
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
  vocab.add_argument("--output", default=None, help="write the model here")
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
    return f"[eval] step {row['step']} " + " ".join(
        f"{k} {v:.4f}" for k, v in row.items() if k != "step")
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

  json_path, png_path, table = kinds.open_run(args.model_dir).evaluate(
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
  from primer_mtf.bench import report, runner  # pylint: disable=g-import-not-at-top
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
    p.add_argument("--model_dir", required=True)
    p.add_argument("--checkpoint_step", type=int, default=None,
                   help="default: the latest checkpoint")
    p.add_argument("--mesh", default=None, help="run on another mesh")
    p.add_argument("--gin_param", action="append", default=[])
  smp.add_argument("--prompt", action="append", required=True,
                   help="text to continue; repeat for a batch")
  smp.add_argument("--max_new_tokens", type=int, default=32)
  smp.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
  smp.add_argument("--top_k", type=int, default=None,
                   help="sample from the k most likely tokens")
  smp.add_argument("--seed", type=int, default=0)
  smp.add_argument("--num_samples", type=int, default=1,
                   help="samples per prompt")
  smp.add_argument("--json", action="store_true",
                   help="one JSON object a sample: ids, text, why it stopped")
  scr.add_argument("--task", action="append", required=True,
                   help="kjv_ending, kjv_last_word, super_glue/NAME, super_glue "
                        "(all of them) or a JSONL file; repeat for several")
  scr.add_argument("--shots", type=int, default=1)
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


def main(argv=None):
  """The command; ``argv=None`` is a real command line (its stderr is filtered)."""
  args = parser().parse_args(argv)   # before TensorFlow loads: --help is instant
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
