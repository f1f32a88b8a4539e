"""The ``primer-mtf`` command: argument parsing and dispatch, nothing else.

What the commands do lives with their role: runs in ``running/runs.py``, eval in
``running/evaluation.py``, plans in ``planning/planner.py``, vocabularies in
``data/``.
"""

import argparse
import json
import sys


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
                 help="'kjv' (embedded), a text file (a document a line), a folder "
                      "(a document a file), or a TFDS corpus of "
                      "primer_mtf/data/corpus.py (c4, lm1b, pg19: prepared data)")
  p.add_argument("--vocab_size", type=int, default=4096)
  p.add_argument("--vocabulary", default=None,
                 help="an existing SentencePiece model instead of training one")
  p.add_argument("--tfds_data_dir", default=None)


def parser():
  top = argparse.ArgumentParser(
      prog="primer-mtf", description="Train and evaluate Primer language models "
      "in Mesh TensorFlow through T5.")
  sub = top.add_subparsers(dest="command", required=True)
  train = sub.add_parser("train", help="train a model (resumes an existing run)")
  _add_run_flags(train)
  train.add_argument("--train_steps", type=int, default=None)
  train.add_argument("--objective", default="packed_lm",
                     help="gin/objectives/NAME.gin: packed_lm (EOS after each "
                          "document, the default) or lm_as_released (the "
                          "release's 65,536-token chunks, no separators)")
  ev = sub.add_parser("eval", help="perplexity eval of every checkpoint of a run")
  ev.add_argument("--model_dir", required=True)
  ev.add_argument("--split", default="validation")
  ev.add_argument("--mesh", default=None, help="evaluate on another mesh")
  ev.add_argument("--gin_param", action="append", default=[])
  ev.add_argument("--max_batches", type=int, default=100)
  ev.add_argument("--follow", action="store_true",
                  help="evaluate checkpoints as training writes them; stop when "
                       "the run's last step is evaluated")
  ev.add_argument("--poll_seconds", type=float, default=30.0)
  ev.add_argument("--timeout_seconds", type=float, default=3600.0,
                  help="with --follow: give up after this long without a new "
                       "checkpoint")
  plan = sub.add_parser("plan", help="parameters, FLOPs and memory per core of a "
                        "run, and whether its layout divides and fits")
  plan.add_argument("--model", default="transformer")
  plan.add_argument("--size", default="tiny")
  plan.add_argument("--mesh", default="cpu", help="default: one device")
  plan.add_argument("--vocab_size", type=int, default=None,
                    help="embedding rows (default: T5's vocabulary, 32,128)")
  plan.add_argument("--gin_param", action="append", default=[])
  plan.add_argument("--json", action="store_true", help="machine-readable output")
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
  cmp.add_argument("--seeds", type=int, default=1)
  cmp.add_argument("--size", default="tiny")
  cmp.add_argument("--mesh", default="cpu")
  cmp.add_argument("--corpus", default="kjv")
  cmp.add_argument("--objective", default=None)
  cmp.add_argument("--train_steps", type=int, default=None)
  cmp.add_argument("--evaluations", type=int, default=10,
                   help="with --train: checkpoints (evaluations) per run")
  cmp.add_argument("--gin_param", action="append", default=[])
  vocab = sub.add_parser("vocab", help="train (or find cached) a SentencePiece model")
  _add_corpus_flags(vocab)
  vocab.add_argument("--output", default=None, help="write the model here")
  for command in (train, ev, plan, cmp, vocab):
    command.add_argument("-v", "--verbose", action="store_true",
                         help="show everything TensorFlow and mesh-tensorflow log")
  return top


def _set_verbosity(verbose):
  """tf.logging (mesh-tensorflow's and the estimator's INFO and WARNING lines)
  only with -v; errors always."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  tf.logging.set_verbosity(tf.logging.INFO if verbose else tf.logging.ERROR)


def train(args):
  from primer_mtf.running import runs  # pylint: disable=g-import-not-at-top
  gin_param = list(args.gin_param)
  if args.train_steps is not None:
    gin_param.append(f"utils.run.train_steps = {args.train_steps}")
  record = runs.make_record(args.model, args.size, args.mesh, args.corpus,
                            args.vocab_size, args.vocabulary, args.tfds_data_dir,
                            args.gin_file, gin_param, args.objective)
  runs.train(args.model_dir, record)
  return 0


def _eval_line(row):
  return (f"[eval] step {row['step']} loss {row['loss']:.4f} "
          f"perplexity {row['perplexity']:.2f} "
          f"token_accuracy {row['token_accuracy']:.4f}")


def evaluate(args):
  from primer_mtf.running import runs  # pylint: disable=g-import-not-at-top
  new = []

  def report(row):
    new.append(row["step"])
    if args.follow:
      print(_eval_line(row), flush=True)

  json_path, png_path, table = runs.evaluate(
      args.model_dir, args.split, args.mesh, args.gin_param, args.max_batches,
      follow=args.follow, poll_seconds=args.poll_seconds,
      timeout_seconds=args.timeout_seconds, report=report)
  if not args.follow:
    for row in table:
      print(_eval_line(row))
  print(f"[eval] {len(new)} checkpoints evaluated now, "
        f"{len(table) - len(new)} evaluated before")
  print(f"[eval] wrote {json_path} and {png_path}")
  return 0


def compare(args):
  from primer_mtf.running import compare as compare_lib  # pylint: disable=g-import-not-at-top
  from primer_mtf.errors import UsageError  # pylint: disable=g-import-not-at-top
  if args.train:
    if args.model_dirs:
      raise UsageError("give either RUN_DIRs or --train with --models, not both")
    summary, json_path, png_path = compare_lib.train_and_compare(
        args.models, args.seeds, args.output, args.size, args.mesh, args.corpus,
        args.train_steps, args.evaluations, args.gin_param, args.objective)
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
  result = planner.plan(args.model, args.size, args.mesh, args.vocab_size,
                        args.gin_param)
  print(json.dumps(result, indent=1) if args.json else planner.format_plan(result))
  if result["errors"]:
    raise UsageError(result["errors"][0])
  return 0


def vocab(args):
  import shutil  # pylint: disable=g-import-not-at-top
  from primer_mtf.data import corpus  # pylint: disable=g-import-not-at-top
  from primer_mtf.data import tasks  # pylint: disable=g-import-not-at-top
  path = tasks.trained_vocabulary(corpus.resolve(args.corpus, args.tfds_data_dir),
                                  args.vocab_size)
  if args.output:
    shutil.copyfile(path, args.output)
    path = args.output
  print(path)
  return 0


def main(argv=None):
  """The command; ``argv=None`` is a real command line (its stderr is filtered)."""
  args = parser().parse_args(argv)
  from primer_mtf import quiet  # pylint: disable=g-import-not-at-top
  from primer_mtf.errors import UsageError  # pylint: disable=g-import-not-at-top
  if argv is None:
    quiet.filter_native_stderr()
  _set_verbosity(args.verbose)
  try:
    return {"train": train, "eval": evaluate, "plan": plan, "compare": compare,
            "vocab": vocab}[args.command](args)
  except UsageError as e:
    print(f"primer-mtf: error: {str(e).splitlines()[0]}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
