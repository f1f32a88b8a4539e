"""Bad input, as a new user would give it: one line, exit status 2, and the model
dir byte-identical or never created. Each case is a row of the README's bad-input
table; `python tests/test_bad_input.py` prints that table from these cases."""
import os
import stat
import sys

import pytest

from primer_mtf import cli
from primer_mtf import files
from primer_mtf.commands import run as run_lib
from primer_mtf.commands import runs

from conftest import run_cli

RUN = "{run}"          # a trained 2-step tiny run (copied for each case)
NEW = "{new}"          # a model_dir that does not exist yet
TMP = "{tmp}"          # the case's own folder


def _corpus(tmp, name, data):
  path = os.path.join(tmp, name)
  if isinstance(data, dict):   # a folder
    os.makedirs(path)
    for file_name, content in data.items():
      with open(os.path.join(path, file_name), "wb") as f:
        f.write(content)
  else:
    with open(path, "wb") as f:
      f.write(data)
  return path


# (id, group, argv, what the one line says); {tmp}/NAME.txt, {tmp}/NAME/ are made
# by FILES below.
CASES = [
    ("unknown-command", "CLI", ["trian"], "invalid choice: 'trian'"),
    ("no-model-dir", "CLI", ["train"], "the following arguments are required: --model_dir"),
    ("train-steps-0", "CLI", ["train", "--model_dir", NEW, "--train_steps", "0"],
     "--train_steps: 0 is not positive"),
    ("train-steps-negative", "CLI", ["train", "--model_dir", NEW, "--train_steps", "-5"],
     "--train_steps: -5 is not positive"),
    ("train-steps-word", "CLI", ["train", "--model_dir", NEW, "--train_steps", "ten"],
     "'ten' is not a whole number"),
    ("vocab-size-0", "CLI", ["train", "--model_dir", NEW, "--vocab_size", "0"],
     "--vocab_size: 0 is not positive"),
    ("plan-vocab-size-0", "CLI", ["plan", "--vocab_size", "0"],
     "--vocab_size: 0 is not positive"),
    ("eval-max-batches-0", "CLI", ["eval", "--model_dir", RUN, "--max_batches", "0"],
     "--max_batches: 0 is not positive"),
    ("unknown-flag", "CLI", ["train", "--model_dir", NEW, "--steps", "5"],
     "unrecognized arguments: --steps 5"),
    ("unknown-model", "models", ["train", "--model_dir", NEW, "--model", "gpt5"],
     "unknown --model 'gpt5'; choose one of:"),
    ("unknown-size", "models", ["train", "--model_dir", NEW, "--size", "huge"],
     "unknown --size 'huge'"),
    ("unknown-mesh", "meshes", ["train", "--model_dir", NEW, "--mesh", "v9-8"],
     "unknown --mesh 'v9-8'"),
    ("unknown-objective", "models", ["train", "--model_dir", NEW, "--objective", "span"],
     "unknown --objective 'span'; choose one of: lm_as_released, packed_lm, "
     "span_corruption"),
    ("encoder-decoder-on-lm", "models",
     ["train", "--model_dir", NEW, "--model", "bi/transformer"],
     "--model bi/transformer is an encoder-decoder; train it with an encoder-decoder "
     "objective"),
    ("lm-on-span-corruption", "models",
     ["train", "--model_dir", NEW, "--objective", "span_corruption"],
     "objective span_corruption trains encoder-decoder models"),
    ("heads-over-mesh", "meshes",
     ["train", "--model_dir", NEW, "--mesh", "cpu_2x2", "--gin_param", "num_heads = 3"],
     "heads=3 does not divide over mesh dimension model:2"),
    ("d-ff-over-mesh", "meshes",
     ["train", "--model_dir", NEW, "--mesh", "cpu_2x2", "--gin_param", "d_ff = 501"],
     "d_ff=501 does not divide over mesh dimension model:2"),
    ("batch-over-mesh", "meshes",
     ["train", "--model_dir", NEW, "--gin_param", "utils.run.mesh_shape = 'batch:3'",
      "--gin_param", "utils.run.mesh_devices = ['', '', '']"],
     "batch=16 does not divide over mesh dimension batch:3"),
    ("plan-does-not-divide", "meshes",
     ["plan", "--size", "small", "--mesh", "cpu_2x2", "--gin_param", "num_heads = 5"],
     "heads=5 does not divide over mesh dimension model:2"),
    ("gin-syntax", "gin", ["train", "--model_dir", NEW, "--gin_param", "d_model = "],
     "bad gin configuration"),
    ("gin-unknown-name", "gin",
     ["train", "--model_dir", NEW, "--gin_param", "no_such_layer.size = 1"],
     "bad gin configuration: No configurable matching 'no_such_layer'"),
    ("gin-missing-file", "gin",
     ["train", "--model_dir", NEW, "--gin_file", "/no/such/file.gin"],
     "Unable to open file: /no/such/file.gin"),
    ("gin-train-steps-0", "gin",
     ["train", "--model_dir", NEW, "--gin_param", "utils.run.train_steps = 0"],
     "train_steps is 0; train at least one step"),
    ("corpus-missing", "data", ["train", "--model_dir", NEW, "--corpus", "/no/such.txt"],
     "corpus /no/such.txt does not exist"),
    ("corpus-empty", "data", ["train", "--model_dir", NEW, "--corpus", "{tmp}/empty.txt"],
     "has no text"),
    ("corpus-one-line", "data",
     ["train", "--model_dir", NEW, "--corpus", "{tmp}/one.txt"],
     "has only 1 document; it needs at least two"),
    ("corpus-binary", "data", ["train", "--model_dir", NEW, "--corpus", "{tmp}/bin.txt"],
     "is not a text file (it has NUL bytes)"),
    ("corpus-latin-1", "data",
     ["train", "--model_dir", NEW, "--corpus", "{tmp}/latin1.txt"],
     "is not UTF-8 text (bad byte at offset 3)"),
    ("corpus-empty-folder", "data",
     ["train", "--model_dir", NEW, "--corpus", "{tmp}/hidden_only"], "has no text"),
    ("corpus-c4-unprepared", "data",
     ["train", "--model_dir", NEW, "--corpus", "c4", "--tfds_data_dir", "{tmp}/tfds"],
     "TFDS dataset c4/en:3.1.0 is not prepared under"),
    ("corpus-c4-3.0.1-unprepared", "data",
     ["train", "--model_dir", NEW, "--corpus", "c4_v301", "--tfds_data_dir",
      "{tmp}/tfds"], "c4/en:3.0.1 is not prepared under"),
    ("vocabulary-missing", "vocabularies",
     ["train", "--model_dir", NEW, "--vocabulary", "/no/such.model"],
     "vocabulary /no/such.model does not exist"),
    ("vocabulary-not-sentencepiece", "vocabularies",
     ["train", "--model_dir", NEW, "--vocabulary", "{tmp}/one.txt"],
     "is not a SentencePiece model"),
    ("vocab-size-too-small", "vocabularies",
     ["vocab", "--corpus", "{tmp}/two.txt", "--vocab_size", "8"],
     "vocab_size 8 is too small"),
    ("vocab-output-folder-missing", "vocabularies",
     ["vocab", "--corpus", "{tmp}/two.txt", "--vocab_size", "20", "--output",
      "/no/such/dir/v.model"], "folder /no/such/dir does not exist"),
    ("vocab-size-under-the-alphabet", "vocabularies",
     ["vocab", "--corpus", "{tmp}/two.txt", "--vocab_size", "20"],
     "try a larger --vocab_size: it must hold every character"),
    ("model-dir-is-a-file", "model dirs",
     ["train", "--model_dir", "{tmp}/one.txt"], "is a file; give a folder"),
    ("model-dir-under-a-file", "model dirs",
     ["train", "--model_dir", "{tmp}/one.txt/run"], "is under the file"),
    ("model-dir-read-only", "model dirs",
     ["train", "--model_dir", "{tmp}/read_only/run"], "cannot write in"),
    ("model-dir-foreign-checkpoints", "model dirs",
     ["train", "--model_dir", "{tmp}/foreign"],
     "holds checkpoints that primer-mtf did not write"),
    ("resume-other-model", "model dirs",
     ["train", "--model_dir", RUN, "--model", "primer"],
     "holds a run with model='transformer', not 'primer'"),
    ("resume-other-objective", "model dirs",
     ["train", "--model_dir", RUN, "--objective", "lm_as_released"],
     "holds a run with objective='packed_lm', not 'lm_as_released'"),
    ("resume-changed-shape", "checkpoints",
     ["train", "--model_dir", RUN, "--train_steps", "4", "--gin_param", "d_model = 256"],
     "was trained with d_model = 128 (now 256); a resume may change only the step "
     "budget"),
    ("resume-changed-layers", "checkpoints",
     ["train", "--model_dir", RUN, "--train_steps", "4", "--gin_param",
      "transformer.make_layer_stack.layers = [@transformer_layers.SelfAttention]"],
     "a resume may change only the step budget"),
    ("resume-adds-skip-steps", "checkpoints",
     ["train", "--model_dir", RUN, "--train_steps", "4", "--gin_param",
      "utils.run.optimizer = @primer_mtf.SkipNonFiniteSteps"],
     "was trained with run.optimizer = @optimize.AdafactorOptimizer (now "
     "@primer_mtf.SkipNonFiniteSteps)"),
    ("eval-not-a-run", "model dirs", ["eval", "--model_dir", "{tmp}"],
     "is not a primer-mtf run"),
    ("eval-record-disagrees", "checkpoints",
     ["eval", "--model_dir", RUN, "--gin_param", "d_kv = 16"],
     "its record no longer describes its checkpoints"),
    ("eval-other-vocabulary", "checkpoints",
     ["eval", "--model_dir", "{tmp}/revocabbed"],
     "was trained with another vocabulary"),
    ("finetune-not-a-run", "checkpoints",
     ["finetune", "--pretrained_dir", "{tmp}", "--task", "kjv_book", "--model_dir", NEW],
     "has no operative_config.gin"),
    ("finetune-missing-step", "checkpoints",
     ["finetune", "--pretrained_dir", RUN, "--checkpoint_step", "999", "--task",
      "kjv_book", "--model_dir", NEW], "has no checkpoint at step 999"),
    ("finetune-other-architecture", "checkpoints",
     ["finetune", "--pretrained_dir", RUN, "--model", "primer", "--task", "kjv_book",
      "--model_dir", NEW], "was trained with another architecture or vocabulary"),
    ("finetune-unknown-task", "data",
     ["finetune", "--pretrained_dir", RUN, "--task", "no_such_task", "--model_dir", NEW],
     "unknown --task 'no_such_task'"),
    ("finetune-task-bad-line", "data",
     ["finetune", "--pretrained_dir", RUN, "--task", "{tmp}/task", "--model_dir", NEW],
     "train.jsonl:2: not JSON"),
    ("finetune-unknown-format", "CLI",
     ["finetune", "--pretrained_dir", RUN, "--task", "kjv_book", "--format", "bidi",
      "--model_dir", NEW], "unknown --format 'bidi'"),
    ("finetune-into-pretrained", "model dirs",
     ["finetune", "--pretrained_dir", RUN, "--task", "kjv_book", "--model_dir", RUN],
     "--model_dir is the pretrained folder"),
    # issue 25: tracebacks where one line belongs
    ("record-cut-train", "model dirs", ["train", "--model_dir", "{tmp}/cut_record"],
     "primer_mtf_run.json is damaged (cut short or not a run record)"),
    ("record-cut-eval", "model dirs", ["eval", "--model_dir", "{tmp}/cut_record"],
     "primer_mtf_run.json is damaged (cut short or not a run record)"),
    ("record-a-list-train", "model dirs", ["train", "--model_dir", "{tmp}/list_record"],
     "primer_mtf_run.json is damaged (cut short or not a run record)"),
    ("record-a-list-eval", "model dirs", ["eval", "--model_dir", "{tmp}/list_record"],
     "primer_mtf_run.json is damaged (cut short or not a run record)"),
    ("model-dir-empty", "model dirs", ["train", "--model_dir", ""],
     "--model_dir is empty; give a folder"),
    ("model-dir-dangling-symlink", "model dirs",
     ["train", "--model_dir", "{tmp}/dangling"],
     "--model_dir {tmp}/dangling is a symlink to {tmp}/nowhere, which does not exist"),
    ("compare-output-a-file", "compare",
     ["compare", RUN, "{tmp}/run2", "--output", "{tmp}/one.txt"],
     "--output {tmp}/one.txt is a file; give a folder"),
    ("compare-cut-eval-results", "compare", ["compare", "{tmp}/cut_eval", RUN],
     "cut_eval/eval_validation.json is damaged (cut short or not eval results); "
     "run `primer-mtf eval"),
    ("score-latin-1-task", "score",
     ["score", "--model_dir", RUN, "--task", "{tmp}/latin1.jsonl"],
     "latin1.jsonl:2: not UTF-8 text (bad byte at offset 68)"),
    ("finetune-task-json-cut", "finetune",
     ["finetune", "--pretrained_dir", RUN, "--task", "{tmp}/task_json_cut",
      "--model_dir", NEW], "task.json: not JSON (Expecting value at line 1 column 12)"),
    ("finetune-task-json-a-list", "finetune",
     ["finetune", "--pretrained_dir", RUN, "--task", "{tmp}/task_json_list",
      "--model_dir", NEW], 'task.json: expected a JSON object such as {{"metric"'),
    ("finetune-latin-1-task", "finetune",
     ["finetune", "--pretrained_dir", RUN, "--task", "{tmp}/task_latin1",
      "--model_dir", NEW], "train.jsonl:2: not UTF-8 text (bad byte at offset 47)"),
    ("eval-split-test", "CLI", ["eval", "--model_dir", RUN, "--split", "test"],
     "--split test: its corpus has only the splits train and validation"),
    ("eval-poll-negative", "CLI",
     ["eval", "--model_dir", RUN, "--follow", "--poll_seconds", "-1"],
     "--poll_seconds -1 is negative"),
    ("gin-d-model-0", "gin", ["train", "--model_dir", NEW, "--gin_param", "d_model = 0"],
     "d_model = 0: a model's sizes must be at least 1"),
    ("gin-num-heads-0", "gin",
     ["train", "--model_dir", NEW, "--gin_param", "num_heads = 0"],
     "num_heads = 0: a model's sizes must be at least 1"),
    ("vocab-output-a-folder", "vocabularies",
     ["vocab", "--corpus", "{tmp}/two.txt", "--output", "{tmp}/hidden_only"],
     "--output {tmp}/hidden_only is a folder; give a file name"),
    ("sample-temperature-nan", "sample",
     ["sample", "--model_dir", RUN, "--prompt", "Amen", "--temperature", "nan"],
     "--temperature nan is not a finite number"),
    ("sample-temperature-inf", "sample",
     ["sample", "--model_dir", RUN, "--prompt", "Amen", "--temperature", "inf"],
     "--temperature inf is not a finite number"),
    ("finetune-learning-rate-negative", "finetune",
     ["finetune", "--pretrained_dir", RUN, "--task", "kjv_book", "--model_dir", NEW,
      "--learning_rate", "-1"], "--learning_rate -1 is negative"),
    ("finetune-learning-rate-0", "finetune",
     ["finetune", "--pretrained_dir", RUN, "--task", "kjv_book", "--model_dir", NEW,
      "--learning_rate", "0"], "--learning_rate 0 must be more than 0"),
    ("finetune-learning-rate-nan", "finetune",
     ["finetune", "--pretrained_dir", RUN, "--task", "kjv_book", "--model_dir", NEW,
      "--learning_rate", "nan"], "--learning_rate nan is not a finite number"),
    ("train-steps-10-to-the-20", "CLI",
     ["train", "--model_dir", NEW, "--train_steps", str(10**20)],
     f"{10**20} is too large; give at most 2147483647 (2**31-1)"),
    # more of the same kinds
    ("eval-timeout-0", "CLI",
     ["eval", "--model_dir", RUN, "--follow", "--timeout_seconds", "0"],
     "--timeout_seconds 0 must be more than 0"),
    ("eval-poll-nan", "CLI", ["eval", "--model_dir", RUN, "--poll_seconds", "nan"],
     "--poll_seconds nan is not a finite number"),
    ("gin-d-ff-0", "gin", ["train", "--model_dir", NEW, "--gin_param", "d_ff = 0"],
     "d_ff = 0: a model's sizes must be at least 1"),
    ("gin-num-layers-0", "gin",
     ["train", "--model_dir", NEW, "--gin_param", "num_layers = 0"],
     "num_layers = 0: a model's sizes must be at least 1"),
    ("gin-d-model-negative", "gin",
     ["train", "--model_dir", NEW, "--gin_param", "d_model = -8"],
     "d_model = -8: a model's sizes must be at least 1"),
    ("plan-d-kv-0", "gin", ["plan", "--gin_param", "d_kv = 0"],
     "d_kv = 0: a model's sizes must be at least 1"),
    # compare
    ("compare-one-run", "compare", ["compare", RUN],
     "compare needs a baseline run and at least one other run"),
    ("compare-no-runs", "compare", ["compare", "--output", "{tmp}/out"],
     "compare needs a baseline run and at least one other run"),
    ("compare-same-run-twice", "compare", ["compare", RUN, RUN],
     "two runs have the same folder name"),
    ("compare-group-of-one-model", "compare", ["compare", RUN, "{tmp}/run2", "--group"],
     "--group groups runs by model, and every run is transformer"),
    ("compare-not-a-run", "compare", ["compare", "{tmp}/hidden_only", RUN],
     "hidden_only is not a primer-mtf run"),
    ("compare-unevaluated-split", "compare",
     ["compare", RUN, "{tmp}/run2", "--split", "test"], "run has no test evaluation"),
    ("compare-runs-and-train", "compare", ["compare", RUN, "--train"],
     "give either RUN_DIRs or --train with --models, not both"),
    ("compare-train-one-model", "compare",
     ["compare", "--train", "--models", "transformer", "--output", "{tmp}/out"],
     "compare --train needs at least two --models"),
    ("compare-seeds-0", "compare", ["compare", "--train", "--seeds", "0"],
     "--seeds: 0 is not positive"),
    ("compare-vary-unknown", "compare", ["compare", "--train", "--vary", "weights"],
     "invalid choice: 'weights'"),
    ("compare-output-empty", "compare", ["compare", RUN, "{tmp}/run2", "--output", ""],
     "--output is empty; give a folder"),
    # sample
    ("sample-max-new-tokens-negative", "sample",
     ["sample", "--model_dir", RUN, "--prompt", "Amen", "--max_new_tokens", "-1"],
     "--max_new_tokens -1 must be at least 1"),
    ("sample-top-k-word", "sample",
     ["sample", "--model_dir", RUN, "--prompt", "Amen", "--top_k", "many"],
     "--top_k 'many' is not a whole number"),
    ("sample-checkpoint-step-negative", "sample",
     ["sample", "--model_dir", RUN, "--prompt", "Amen", "--checkpoint_step", "-1"],
     "--checkpoint_step -1 is negative"),
    ("sample-missing-checkpoint", "sample",
     ["sample", "--model_dir", RUN, "--prompt", "Amen", "--checkpoint_step", "7"],
     "has no checkpoint at step 7; it has steps 0, 2"),
    ("sample-empty-prompt", "sample", ["sample", "--model_dir", RUN, "--prompt", ""],
     "--prompt is empty; give some text to continue"),
    ("sample-prompt-longer-than-the-model", "sample",
     ["sample", "--model_dir", RUN, "--prompt", "and the " * 100],
     "tokens; the model's length is 128, so nothing can follow it"),
    # score
    ("score-limit-0", "score",
     ["score", "--model_dir", RUN, "--task", "kjv_ending", "--limit", "0"],
     "--limit: 0 is not positive"),
    ("score-normalize-unknown", "score",
     ["score", "--model_dir", RUN, "--task", "kjv_ending", "--normalize", "max"],
     "invalid choice: 'max'"),
    ("score-task-missing-context", "score",
     ["score", "--model_dir", RUN, "--task", "{tmp}/no_context.jsonl"],
     'no_context.jsonl:1: needs "context", a string'),
    ("score-train-file-missing", "score",
     ["score", "--model_dir", RUN, "--task", "{tmp}/answers.jsonl", "--train_file",
      "{tmp}/none.jsonl"], "task file {tmp}/none.jsonl does not exist"),
    ("score-more-shots-than-examples", "score",
     ["score", "--model_dir", RUN, "--task", "{tmp}/answers.jsonl", "--shots", "5"],
     "--shots 5 needs 5 examples to draw from, but the task's train split has 0"),
    ("score-shots-word", "score",
     ["score", "--model_dir", RUN, "--task", "kjv_ending", "--shots", "one"],
     "--shots 'one' is not a whole number"),
    # finetune
    ("finetune-steps-0", "finetune",
     ["finetune", "--pretrained_dir", RUN, "--task", "kjv_book", "--model_dir", NEW,
      "--finetune_steps", "0"], "--finetune_steps: 0 is not positive"),
    ("finetune-task-folder-missing", "finetune",
     ["finetune", "--pretrained_dir", RUN, "--task", "{tmp}/no_folder",
      "--model_dir", NEW], "unknown --task '{tmp}/no_folder'"),
    ("finetune-task-without-validation", "finetune",
     ["finetune", "--pretrained_dir", RUN, "--task", "{tmp}/task_train_only",
      "--model_dir", NEW], "has no validation.jsonl or validation.tsv"),
    ("finetune-tsv-three-fields", "finetune",
     ["finetune", "--pretrained_dir", RUN, "--task", "{tmp}/task_tsv",
      "--model_dir", NEW], "train.tsv:1: expected inputs<TAB>targets, got 3 field(s)"),
    ("finetune-unknown-metric", "finetune",
     ["finetune", "--pretrained_dir", RUN, "--task", "{tmp}/task_bleu9",
      "--model_dir", NEW], "task.json: unknown metric 'bleu9'"),
    ("finetune-one-length", "finetune",
     ["finetune", "--pretrained_dir", RUN, "--task", "kjv_book", "--model_dir", NEW,
      "--inputs_length", "64"], "give both --inputs_length and --targets_length"),
    ("finetune-encoder-decoder-format-on-lm", "finetune",
     ["finetune", "--pretrained_dir", RUN, "--task", "kjv_book", "--model_dir", NEW,
      "--format", "encoder_decoder"],
     "is a decoder-only model; --format encoder_decoder does not fit it"),
    ("finetune-pretrained-dir-empty", "finetune",
     ["finetune", "--pretrained_dir", "", "--task", "kjv_book", "--model_dir", NEW],
     "--pretrained_dir is empty; give a folder"),
    ("finetune-checkpoint-step-negative", "finetune",
     ["finetune", "--pretrained_dir", RUN, "--task", "kjv_book", "--model_dir", NEW,
      "--checkpoint_step", "-2"], "--checkpoint_step -2 is negative"),
    # cache
    ("cache-runner-unknown", "cache",
     ["cache", "--output", "{tmp}/cache", "--runner", "spark"],
     "invalid choice: 'spark'"),
    ("cache-output-a-file", "cache", ["cache", "--output", "{tmp}/one.txt"],
     "--output {tmp}/one.txt is a file; give a folder"),
    ("cache-min-shards-0", "cache",
     ["cache", "--output", "{tmp}/cache", "--min_shards", "0"],
     "--min_shards: 0 is not positive"),
    ("cache-dataflow-without-image", "cache",
     ["cache", "--output", "gs://bucket/cache", "--runner", "dataflow"],
     "--runner dataflow needs --worker_image"),
    ("cache-unknown-objective", "cache",
     ["cache", "--output", "{tmp}/cache", "--objective", "nope"],
     "unknown --objective 'nope'"),
    ("cache-unknown-task", "cache",
     ["cache", "--output", "{tmp}/cache", "--task", "nope"], "unknown --task 'nope'"),
    # bench
    ("bench-only-unknown", "bench", ["bench", "--only", "speed"],
     "invalid choice: 'speed'"),
    ("bench-out-a-file", "bench", ["bench", "--out", "{tmp}/one.txt"],
     "--out {tmp}/one.txt is a file; give a folder"),
    ("bench-memory-sizes-unknown", "bench",
     ["bench", "--only", "memory", "--memory_sizes", "huge", "--out", "{tmp}/b"],
     "unknown --memory_sizes 'huge'; choose from: 32b, 8b"),
]

FILES = {
    "empty.txt": b"",
    "one.txt": b"just one document\n",
    "two.txt": b"".join(b"document %d with some words in it\n" % i for i in range(30)),
    "bin.txt": b"\x00\x01\x02binary",
    "latin1.txt": b"caf\xe9 au lait\nsecond\n",
    "hidden_only": {".hidden": b"text\n"},
    "task": {"train.jsonl": b'{"inputs": "a", "targets": "b"}\nnot json\n',
             "validation.jsonl": b'{"inputs": "a", "targets": "b"}\n'},
    "latin1.jsonl": (b'{"context": "a", "choices": ["x", "y"], "label": 0}\n'
                     b'{"context": "caf\xe9", "choices": ["x", "y"], "label": 1}\n'),
    "no_context.jsonl": b'{"choices": ["x", "y"], "label": 0}\n',
    "answers.jsonl": b'{"context": "In the beginning", "answer": "God"}\n',
}

_EXAMPLE = b'{"inputs": "a", "targets": "b"}\n'

# Folders that only some cases name, made when a case's argv names {tmp}/NAME:
# NAME -> function(folder to make, the trained run).
SPECIAL = {
    "task_json_cut": lambda path, run: _corpus(os.path.dirname(path), os.path.basename(
        path), {"train.jsonl": _EXAMPLE, "validation.jsonl": _EXAMPLE,
                "task.json": b'{"metric": '}),
    "task_json_list": lambda path, run: _corpus(os.path.dirname(path), os.path.basename(
        path), {"train.jsonl": _EXAMPLE, "validation.jsonl": _EXAMPLE,
                "task.json": b'["accuracy"]'}),
    "task_latin1": lambda path, run: _corpus(os.path.dirname(path), os.path.basename(
        path), {"train.jsonl": _EXAMPLE + b'{"inputs": "caf\xe9", "targets": "b"}\n',
                "validation.jsonl": _EXAMPLE}),
    "task_train_only": lambda path, run: _corpus(os.path.dirname(path),
                                                 os.path.basename(path),
                                                 {"train.jsonl": _EXAMPLE}),
    "task_tsv": lambda path, run: _corpus(os.path.dirname(path), os.path.basename(
        path), {"train.tsv": b"a\tb\tc\n", "validation.tsv": b"a\tb\n"}),
    "task_bleu9": lambda path, run: _corpus(os.path.dirname(path), os.path.basename(
        path), {"train.tsv": b"a\tb\n", "validation.tsv": b"a\tb\n",
                "task.json": b'{"metric": "bleu9"}'}),
}


def _snapshot(folder):
  out = {}
  for root, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(root, name)
      if os.path.islink(path):
        continue   # _snapshot_with_links has them
      with open(path, "rb") as f:
        out[os.path.relpath(path, folder)] = f.read()
  return out


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp("bad_input") / "run")
  result = run_cli("train", "--model_dir", model_dir, "--train_steps", "2")
  assert result.returncode == 0, result.stderr[-2000:]
  return model_dir


def _copy_run(path, run, change=None):
  """A copy of the trained run at ``path``; ``change(path)`` then edits it."""
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.copytree(run, path)
  if change:
    change(path)


def _write(path, data):
  with open(path, "wb") as f:
    f.write(data)


def _revocab(path):
  record = run_lib.read_record(path)
  record["vocabulary_pieces_sha256"] = "0" * 16
  files.write_json(os.path.join(path, run_lib.RUN_RECORD), record)


def _foreign(path, run):
  import shutil  # pylint: disable=g-import-not-at-top
  os.makedirs(path)
  for name in os.listdir(run):
    if name.startswith(("model.ckpt-", "checkpoint")):
      shutil.copy(os.path.join(run, name), path)


# Eval results as `eval` writes them, cut short as a half-done copy leaves them.
_EVAL_RESULTS = (b'[\n {\n  "step": 0,\n  "loss": 9.36,\n  "perplexity": 11664.0\n },'
                 b'\n {\n  "step": 2,\n  "lo')

SPECIAL.update({
    "read_only": lambda path, run: (os.makedirs(path), os.chmod(
        path, stat.S_IRUSR | stat.S_IXUSR)),
    "foreign": _foreign,
    "revocabbed": lambda path, run: _copy_run(path, run, _revocab),
    "cut_record": lambda path, run: _copy_run(path, run, lambda p: _write(
        os.path.join(p, run_lib.RUN_RECORD),
        open(os.path.join(p, run_lib.RUN_RECORD), "rb").read()[:40])),
    "list_record": lambda path, run: _copy_run(path, run, lambda p: _write(
        os.path.join(p, run_lib.RUN_RECORD), b"[]")),
    "run2": _copy_run,
    "cut_eval": lambda path, run: _copy_run(path, run, lambda p: _write(
        os.path.join(p, "eval_validation.json"), _EVAL_RESULTS)),
    "dangling": lambda path, run: os.symlink(os.path.join(os.path.dirname(path),
                                                          "nowhere"), path),
})


def _prepare(tmp, run, argv):
  """The case's folder: the FILES, a copy of the trained run, and the special
  folders that the case's argv names."""
  import shutil  # pylint: disable=g-import-not-at-top
  for name, data in FILES.items():
    _corpus(tmp, name, data)
  copy = os.path.join(tmp, "run")
  shutil.copytree(run, copy)
  for name, make in SPECIAL.items():
    if any(f"{{tmp}}/{name}" in a for a in argv):
      make(os.path.join(tmp, name), run)
  return copy


def _snapshot_with_links(folder):
  """_snapshot, and the symlinks (which os.walk's files leave out when dangling)."""
  out = _snapshot(folder)
  for root, dirs, names in os.walk(folder):
    for name in dirs + names:
      path = os.path.join(root, name)
      if os.path.islink(path):
        out[os.path.relpath(path, folder) + " ->"] = os.readlink(path)
  return out


@pytest.mark.e2e
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_touches_nothing(case, trained_run, tmp_path, capsys,
                                                  monkeypatch):
  """Run in the case's folder, so that a file written into the working directory
  (as `--model_dir ""` once wrote its record) is caught too."""
  name, _, argv, message = case
  if name == "model-dir-read-only" and os.geteuid() == 0:
    pytest.skip("root writes anywhere")
  tmp = str(tmp_path)
  run = _prepare(tmp, trained_run, argv)
  new = os.path.join(tmp, "new_run")
  argv = [a.format(run=run, new=new, tmp=tmp) for a in argv]
  monkeypatch.chdir(tmp)
  before = _snapshot_with_links(tmp)
  try:
    rc = cli.main(argv)
  except SystemExit as e:   # argparse's errors
    rc = e.code
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2, err
  assert len(err) == 1 and err[0].startswith("primer-mtf: error: "), err
  assert message.format(tmp=tmp) in err[0], err[0]
  assert _snapshot_with_links(tmp) == before
  assert not os.path.exists(new)


def markdown():
  """The README's table."""
  lines = ["| group | input | the one line says | test id |", "|---|---|---|---|"]
  def shown(arg):
    if len(arg) > 60:
      arg = arg[:16] + "..."
    return arg if arg and " " not in arg else f"'{arg}'"

  def local(text):
    return text.replace("{run}", "RUN").replace("{new}", "NEW").replace(
        "{tmp}/", "").replace("{tmp}", ".")

  for name, group, argv, message in CASES:
    command = local("primer-mtf " + " ".join(shown(a) for a in argv))
    message = local(message.replace("{{", "{").replace("}}", "}")).replace(
        "|", "\\|")
    lines.append(f"| {group} | `{command}` | {message} | `{name}` |")
  return "\n".join(lines)


if __name__ == "__main__":
  sys.stdout.write(markdown() + "\n")
