"""Bad input: one clear line, exit status 2, and no run created or touched. (The
table of single bad inputs is test_bad_input.py; these are the cases with more to
check.)"""
import errno
import os
import subprocess
import sys

import pytest

from primer_mtf import cli
from primer_mtf.commands import run as run_lib
from primer_mtf.commands import runs

from conftest import REPO


def _fails(capsys, argv, message):
  assert cli.main(argv) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("primer-mtf: error: "), err
  assert message in err[0], err[0]


@pytest.fixture
def text_corpus(tmp_path):
  path = tmp_path / "corpus.txt"
  path.write_text("".join(f"document number {i}\n" for i in range(40)))
  return str(path)


def _old_run(tmp_path, model):
  """A run folder whose record predates --objective (no "objective" key)."""
  model_dir = tmp_path / "run"
  model_dir.mkdir()
  record = model_dir / run_lib.RUN_RECORD
  record.write_text(f'{{"model": "{model}", "size": "tiny", "corpus": "kjv", '
                    '"vocab_size": 4096, "vocabulary": null, "gin_file": []}')
  return model_dir, record


def test_foreign_run_is_not_touched(capsys, tmp_path, text_corpus):
  """A model_dir of another run is refused before anything is written."""
  model_dir, record = _old_run(tmp_path, "primer")
  before = record.read_bytes()
  _fails(capsys, ["train", "--model_dir", str(model_dir)],
         "holds a run with model='primer', not 'transformer'")
  assert record.read_bytes() == before
  assert os.listdir(model_dir) == [run_lib.RUN_RECORD]


def test_a_run_is_not_resumed_with_another_objective(capsys, tmp_path):
  """A record from before --objective existed had packed_lm; another objective
  would change the data the run trains on, so it is refused."""
  model_dir, record = _old_run(tmp_path, "transformer")
  before = record.read_bytes()
  _fails(capsys, ["train", "--model_dir", str(model_dir), "--objective",
                  "lm_as_released"],
         "holds a run with objective='packed_lm', not 'lm_as_released'")
  assert record.read_bytes() == before
  assert runs.check_resume(str(model_dir), runs.make_record(
      "transformer", "tiny", "cpu", "kjv", 4096)) is True


def test_eval_of_a_non_run(capsys, tmp_path):
  _fails(capsys, ["eval", "--model_dir", str(tmp_path)], "is not a primer-mtf run")


def test_vocab_command_trains_caches_and_copies(capsys, tmp_path):
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  corpus = tmp_path / "words.txt"
  corpus.write_text("".join(f"{w} alpha{w} beta{w}gamma delta {w}{w}\n"
                            for w in ("red", "green", "blue", "cyan", "magenta",
                                      "yellow", "black", "white", "orange")))
  text_corpus = str(corpus)
  assert cli.main(["vocab", "--corpus", text_corpus, "--vocab_size", "40"]) == 0
  cached = capsys.readouterr().out.strip()
  assert spm.SentencePieceProcessor(model_file=cached).get_piece_size() == 40
  out = tmp_path / "v.model"
  assert cli.main(["vocab", "--corpus", text_corpus, "--vocab_size", "40",
                   "--output", str(out)]) == 0
  assert out.read_bytes() == open(cached, "rb").read()


def test_vocab_command_refuses_a_missing_corpus(capsys):
  _fails(capsys, ["vocab", "--corpus", "/no/such/dir"], "does not exist")


def test_plan_and_a_usage_error_print_only_the_project_s_lines():
  """TensorFlow's start-up noise is dropped by default; -v shows it."""
  env = {k: v for k, v in os.environ.items()
         if k not in ("TF_CPP_MIN_LOG_LEVEL", "PRIMER_MTF_VERBOSE")}
  plan = subprocess.run([sys.executable, "-m", "primer_mtf", "plan", "--size", "tiny"],
                        cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
  assert plan.returncode == 0 and plan.stderr == "", plan.stderr
  assert plan.stdout.startswith("plan: model=transformer size=tiny")
  error = subprocess.run([sys.executable, "-m", "primer_mtf", "plan", "--size", "9b"],
                         cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
  assert error.returncode == 2
  assert error.stderr.splitlines() == [
      "primer-mtf: error: unknown --size '9b'; choose one of: "
      "32b, 8b, large, medium, small, tiny, xl"]
  verbose = subprocess.run([sys.executable, "-m", "primer_mtf", "plan", "--size",
                            "tiny", "-v"], cwd=REPO, capture_output=True, text=True,
                           env=env, timeout=300)
  assert verbose.returncode == 0 and len(verbose.stderr.splitlines()) > 2


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"],
                                  ["train", "--model_dir", "x", "--train_steps", "0"]])
def test_help_and_usage_errors_come_before_tensorflow_loads(argv):
  result = subprocess.run([sys.executable, "-X", "importtime", "-m", "primer_mtf",
                           *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
  assert result.returncode in (0, 2), result.stderr[-2000:]
  imported = [l.rsplit("|", 1)[-1].strip() for l in result.stderr.splitlines()
              if l.startswith("import time:")]
  assert "primer_mtf.cli" in imported
  assert not [m for m in imported if m.startswith(("tensorflow", "mesh_tensorflow"))]


# ------------------------------------------- Ctrl-C and a full disk (issue 25)

def _stops(monkeypatch, exception):
  def command(args):
    del args
    raise exception
  monkeypatch.setattr(cli, "train", command)


def test_ctrl_c_is_one_line_and_exit_130(capsys, monkeypatch, tmp_path):
  """cli.main's side of Ctrl-C: training itself stops after the current step and
  re-raises KeyboardInterrupt; main prints what survives, not a traceback."""
  _stops(monkeypatch, KeyboardInterrupt())
  assert cli.main(["train", "--model_dir", str(tmp_path / "run")]) == 130
  err = capsys.readouterr().err.strip().splitlines()
  assert err == ["primer-mtf: stopped by Ctrl-C; the run keeps every checkpoint "
                 "written so far; run the same command to resume from the newest"]


@pytest.mark.parametrize("make_error", [
    lambda path: OSError(errno.ENOSPC, "No space left on device", path),
    lambda path: OSError(errno.EDQUOT, "Disk quota exceeded", path),
    lambda path: __import__("tensorflow").errors.ResourceExhaustedError(
        None, None, f"{path}; No space left on device"),
], ids=["ENOSPC", "EDQUOT", "tf-error"])
def test_a_full_disk_is_one_line_and_removes_the_partial_files(capsys, monkeypatch,
                                                               tmp_path, make_error):
  model_dir = tmp_path / "run"
  model_dir.mkdir()
  kept = {"model.ckpt-10.index": b"i", "model.ckpt-10.meta": b"m",
          "primer_mtf_run.json": b"{}", "notes.tmp": b"not a partial write"}
  partial = [f"model.ckpt-20.meta.tmp{'ab12' * 8}", f"checkpoint.tmp{'0f' * 16}"]
  for name, data in kept.items():
    (model_dir / name).write_bytes(data)
  for name in partial:
    (model_dir / name).write_bytes(b"half")
  where = str(model_dir / partial[0])
  _stops(monkeypatch, make_error(where))
  assert cli.main(["train", "--model_dir", str(model_dir)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1, err
  assert err[0].startswith(f"primer-mtf: error: the disk is full writing {where} "
                           "(removed 2 partial files it left: "), err[0]
  assert err[0].endswith("; free space and run the command again; the run resumes "
                         "from its newest whole checkpoint"), err[0]
  assert sorted(os.listdir(model_dir)) == sorted(kept)


def test_other_errors_are_not_taken_for_a_full_disk(monkeypatch, tmp_path):
  _stops(monkeypatch, OSError(errno.EACCES, "Permission denied", "x"))
  with pytest.raises(OSError, match="Permission denied"):
    cli.main(["train", "--model_dir", str(tmp_path / "run")])


@pytest.mark.parametrize("argv, message", [
    (["sample", "--model_dir", "r", "--prompt", "a", "--top_k", "0"],
     "primer-mtf: error: --top_k 0 must be at least 1 (see primer-mtf sample --help)"),
    (["train", "--model_dir", "r", "--train_steps", str(2**31)],
     f"primer-mtf: error: argument --train_steps: {2**31} is too large; give at "
     "most 2147483647 (2**31-1) (see primer-mtf train --help)"),
    (["finetune", "--pretrained_dir", "p", "--task", "t", "--model_dir", "r",
      "--learning_rate=-inf"],
     "primer-mtf: error: --learning_rate -inf is not a finite number "
     "(see primer-mtf finetune --help)"),
])
def test_values_are_refused_when_parsed_before_tensorflow(capsys, argv, message):
  """A flag's type names the flag once, and refuses before anything loads."""
  with pytest.raises(SystemExit) as e:
    cli.parser().parse_args(argv)
  assert e.value.code == 2
  assert capsys.readouterr().err.strip().splitlines() == [message]
  assert cli.MAX_COUNT == 2**31 - 1
