"""The ``primer-mtf`` command: train, eval and vocab.

Every run is gin files plus bindings, exactly what ``t5_mesh_transformer`` would be
given; the flags below only choose files and add bindings. Training goes through
mesh-tensorflow's ``utils.run``, the function T5's binary calls.
"""

import argparse
import json
import os
import sys

RUN_RECORD = "primer_mtf_run.json"
# Settings that define the model and data; a resumed run must not change them.
_IDENTITY = ("model", "size", "corpus", "vocab_size", "vocabulary", "gin_file")


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
                      "(a document a file), or c4, lm1b, pg19 (prepared TFDS data)")
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
  train.add_argument("-v", "--verbose", action="store_true")
  ev = sub.add_parser("eval", help="perplexity eval of every checkpoint of a run")
  ev.add_argument("--model_dir", required=True)
  ev.add_argument("--split", default="validation")
  ev.add_argument("--mesh", default=None, help="evaluate on another mesh")
  ev.add_argument("--gin_param", action="append", default=[])
  ev.add_argument("--max_batches", type=int, default=100)
  ev.add_argument("-v", "--verbose", action="store_true")
  plan = sub.add_parser("plan", help="parameters, FLOPs and memory per core of a "
                        "run, and whether its layout divides and fits")
  plan.add_argument("--model", default="transformer")
  plan.add_argument("--size", default="tiny")
  plan.add_argument("--mesh", default="cpu", help="default: one device")
  plan.add_argument("--vocab_size", type=int, default=32128)
  plan.add_argument("--gin_param", action="append", default=[])
  plan.add_argument("--json", action="store_true", help="machine-readable output")
  vocab = sub.add_parser("vocab", help="train (or find cached) a SentencePiece model")
  _add_corpus_flags(vocab)
  vocab.add_argument("--output", default=None, help="write the model here")
  return top


def _corpus_bindings(args):
  corpus = args.corpus
  if corpus not in ("kjv", "c4", "lm1b", "pg19"):
    corpus = os.path.abspath(corpus)
  bindings = [f"corpus_task.corpus = {corpus!r}",
              f"corpus_task.vocab_size = {args.vocab_size}"]
  if args.vocabulary:
    bindings.append(f"corpus_task.vocabulary = {os.path.abspath(args.vocabulary)!r}")
  if args.tfds_data_dir:
    bindings.append(f"corpus_task.tfds_data_dir = {args.tfds_data_dir!r}")
  return bindings


def _record(args):
  return {"model": args.model, "size": args.size, "mesh": args.mesh,
          "corpus": args.corpus if args.corpus in ("kjv", "c4", "lm1b", "pg19")
                    else os.path.abspath(args.corpus),
          "vocab_size": args.vocab_size, "vocabulary": args.vocabulary,
          "tfds_data_dir": args.tfds_data_dir,
          "gin_file": [os.path.abspath(f) for f in args.gin_file],
          "gin_param": args.gin_param}


def _read_record(model_dir):
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  path = os.path.join(model_dir, RUN_RECORD)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _check_resume(model_dir, record):
  """An existing run may be resumed, never re-purposed."""
  from primer_mtf.errors import UsageError  # pylint: disable=g-import-not-at-top
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  old = _read_record(model_dir)
  if old is None:
    if tf.io.gfile.exists(model_dir) and tf.train.latest_checkpoint(model_dir):
      raise UsageError(f"{model_dir} holds checkpoints that primer-mtf did not "
                       "write; use a new --model_dir")
    return False
  changed = [k for k in _IDENTITY if old.get(k) != record.get(k)]
  if changed:
    k = changed[0]
    raise UsageError(f"{model_dir} holds a run with {k}={old.get(k)!r}, not "
                     f"{record.get(k)!r}; resume it with the same settings or use "
                     "a new --model_dir")
  return True


def _parse_run(record, extra_params=()):
  from primer_mtf import configs  # pylint: disable=g-import-not-at-top
  args = argparse.Namespace(**record)
  configs.parse(record["model"], record["size"], record["mesh"],
                record["gin_file"],
                _corpus_bindings(args) + list(record["gin_param"]) + list(extra_params))
  configs.check_layout()


def _set_verbosity(verbose):
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  tf.logging.set_verbosity(tf.logging.INFO if verbose else tf.logging.ERROR)


def train(args):
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  from mesh_tensorflow.transformer import utils as mtf_utils  # pylint: disable=g-import-not-at-top
  from primer_mtf.data.tasks import corpus_task  # pylint: disable=g-import-not-at-top
  _set_verbosity(args.verbose)
  record = _record(args)
  if args.train_steps is not None:
    record["gin_param"] = record["gin_param"] + [
        f"utils.run.train_steps = {args.train_steps}"]
  resuming = _check_resume(args.model_dir, record)
  _parse_run(record)
  task = corpus_task()  # loads the corpus and vocabulary: fails before any write
  tf.io.gfile.makedirs(args.model_dir)
  with tf.io.gfile.GFile(os.path.join(args.model_dir, RUN_RECORD), "w") as f:
    json.dump(record, f, indent=1)
  if resuming:
    ckpt = tf.train.latest_checkpoint(args.model_dir)
    print(f"[train] resuming {args.model_dir} from {ckpt}", file=sys.stderr)
  print(f"[train] task {task}", file=sys.stderr)
  mtf_utils.run(tpu_job_name=None, tpu=None, gcp_project=None, tpu_zone=None,
                model_dir=args.model_dir)
  return 0


def evaluate(args):
  from primer_mtf.running import evaluation  # pylint: disable=g-import-not-at-top
  from primer_mtf.errors import UsageError  # pylint: disable=g-import-not-at-top
  _set_verbosity(args.verbose)
  record = _read_record(args.model_dir)
  if record is None:
    raise UsageError(f"{args.model_dir} is not a primer-mtf run (no {RUN_RECORD}); "
                     "train one with `primer-mtf train --model_dir DIR`")
  if args.mesh:
    record["mesh"] = args.mesh
  _parse_run(record, args.gin_param)
  json_path, png_path, table = evaluation.evaluate(
      args.model_dir, args.split, args.max_batches)
  for row in table:
    print(f"[eval] step {row['step']} loss {row['loss']:.4f} "
          f"perplexity {row['perplexity']:.2f} "
          f"token_accuracy {row['token_accuracy']:.4f}")
  print(f"[eval] wrote {json_path} and {png_path}")
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
  from primer_mtf.data import tasks  # pylint: disable=g-import-not-at-top
  path = tasks.trained_vocabulary(args.corpus, args.vocab_size,
                                  tfds_data_dir=args.tfds_data_dir)
  if args.output:
    shutil.copyfile(path, args.output)
    path = args.output
  print(path)
  return 0


def main(argv=None):
  args = parser().parse_args(argv)
  import primer_mtf  # pylint: disable=g-import-not-at-top,unused-import
  from primer_mtf.errors import UsageError  # pylint: disable=g-import-not-at-top
  try:
    return {"train": train, "eval": evaluate, "plan": plan,
            "vocab": vocab}[args.command](args)
  except UsageError as e:
    print(f"primer-mtf: error: {str(e).splitlines()[0]}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
