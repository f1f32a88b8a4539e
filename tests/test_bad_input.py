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
     "holds a run of another model: "),
    ("resume-changed-layers", "checkpoints",
     ["train", "--model_dir", RUN, "--train_steps", "4", "--gin_param",
      "transformer.make_layer_stack.layers = [@transformer_layers.SelfAttention]"],
     "holds a run of another model: "),
    ("resume-adds-skip-steps", "checkpoints",
     ["train", "--model_dir", RUN, "--train_steps", "4", "--gin_param",
      "utils.run.optimizer = @primer_mtf.SkipNonFiniteSteps"],
     "was started without skipping non-finite steps"),
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
}


def _snapshot(folder):
  out = {}
  for root, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, folder)] = f.read()
  return out


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp("bad_input") / "run")
  result = run_cli("train", "--model_dir", model_dir, "--train_steps", "2")
  assert result.returncode == 0, result.stderr[-2000:]
  return model_dir


def _prepare(tmp, run):
  """The case's folder: the FILES, a copy of the trained run, and the special
  model dirs that some cases name."""
  import shutil  # pylint: disable=g-import-not-at-top
  for name, data in FILES.items():
    _corpus(tmp, name, data)
  copy = os.path.join(tmp, "run")
  shutil.copytree(run, copy)
  os.makedirs(os.path.join(tmp, "read_only"))
  os.chmod(os.path.join(tmp, "read_only"), stat.S_IRUSR | stat.S_IXUSR)
  foreign = os.path.join(tmp, "foreign")
  os.makedirs(foreign)
  for name in os.listdir(run):
    if name.startswith(("model.ckpt-", "checkpoint")):
      shutil.copy(os.path.join(run, name), foreign)
  revocabbed = os.path.join(tmp, "revocabbed")
  shutil.copytree(run, revocabbed)
  record = run_lib.read_record(revocabbed)
  record["vocabulary_pieces_sha256"] = "0" * 16
  files.write_json(os.path.join(revocabbed, run_lib.RUN_RECORD), record)
  return copy


@pytest.mark.e2e
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_touches_nothing(case, trained_run, tmp_path, capsys):
  name, _, argv, message = case
  if name == "model-dir-read-only" and os.geteuid() == 0:
    pytest.skip("root writes anywhere")
  tmp = str(tmp_path)
  run = _prepare(tmp, trained_run)
  new = os.path.join(tmp, "new_run")
  argv = [a.format(run=run, new=new, tmp=tmp) for a in argv]
  before = _snapshot(tmp)
  try:
    rc = cli.main(argv)
  except SystemExit as e:   # argparse's errors
    rc = e.code
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2, err
  assert len(err) == 1 and err[0].startswith("primer-mtf: error: "), err
  assert message.format(tmp=tmp) in err[0], err[0]
  assert _snapshot(tmp) == before
  assert not os.path.exists(new)


def markdown():
  """The README's table."""
  lines = ["| group | input | the one line says | test id |", "|---|---|---|---|"]
  for name, group, argv, message in CASES:
    command = "primer-mtf " + " ".join(a if " " not in a else f"'{a}'" for a in argv)
    command = command.replace("{run}", "RUN").replace("{new}", "NEW").replace(
        "{tmp}/", "").replace("{tmp}", ".")
    lines.append(f"| {group} | `{command}` | {message} | `{name}` |")
  return "\n".join(lines)


if __name__ == "__main__":
  sys.stdout.write(markdown() + "\n")
