"""Every command on every kind of run: a pretraining run, a fine-tuning run and a
run trained by T5's own ``t5_mesh_transformer``. Each command works on it, or
refuses with one line and exit 2, and leaves the run's files as they were.

The runs are trained in subprocesses, as users train them; the commands on them
run in this process (``cli.main``), which spares each one a TensorFlow start."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from conftest import digests
from conftest import run_cli
from primer_mtf import cli

pytestmark = pytest.mark.e2e

STEPS = 4
SAVE_EVERY = ["--gin_param", "utils.run.save_checkpoints_steps = 2"]
FEW_EXAMPLES = ["--gin_param", "mesh_eval_dataset_fn.num_eval_examples = 8"]


def _ok(result):
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def _main(capsys, *argv):
  """(exit status, stdout, stderr) of ``primer-mtf ARGV`` run in this process."""
  status = cli.main(list(argv))
  out, err = capsys.readouterr()
  return status, out, err


def _works(capsys, *argv):
  status, out, err = _main(capsys, *argv)
  assert status == 0, err[-3000:]
  return out, err


def _refused(capsys, message, *argv):
  status, _, err = _main(capsys, *argv)
  lines = err.strip().splitlines()
  assert status == 2 and len(lines) == 1 and message in lines[0], (status, err[-3000:])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """{kind: model_dir} of a trained run of each kind (tiny, a few steps)."""
  root = tmp_path_factory.mktemp("kinds")
  pretraining = str(root / "pretraining")
  _ok(run_cli("train", "--model_dir", pretraining, "--train_steps", str(STEPS),
              *SAVE_EVERY))
  finetuning = str(root / "finetuning")
  _ok(run_cli("finetune", "--pretrained_dir", pretraining, "--task", "kjv_book",
              "--model_dir", finetuning, "--finetune_steps", "2", *SAVE_EVERY))
  binary = str(root / "binary")
  result = subprocess.run(
      [os.path.join(os.path.dirname(sys.executable), "t5_mesh_transformer"),
       "--module_import=primer_mtf", f"--gin_location_prefix={os.path.join(REPO, 'gin')}/",
       "--gin_file=objectives/packed_lm.gin", "--gin_file=models/primer_ez.gin",
       "--gin_file=sizes/tiny.gin", "--gin_file=meshes/cpu.gin",
       f"--gin_param=utils.run.train_steps = {STEPS}",
       "--gin_param=utils.run.save_checkpoints_steps = 2", f"--model_dir={binary}"],
      capture_output=True, text=True, timeout=900, env=dict(os.environ))
  _ok(result)
  return {"pretraining": pretraining, "finetuning": finetuning, "binary": binary}


KINDS = ("pretraining", "finetuning", "binary")


@pytest.mark.parametrize("kind", KINDS)
def test_sample_score_and_plan_work_on_every_kind(runs, kind, capsys):
  model_dir = runs[kind]
  before = digests(model_dir)
  out, _ = _works(capsys, "sample", "--model_dir", model_dir, "--prompt",
                  "And God said", "--max_new_tokens", "4")
  assert out.strip()
  out, _ = _works(capsys, "plan", "--model_dir", model_dir, "--json")
  result = json.loads(out)
  # the run's own vocabulary, read from its checkpoint: 4,096 pieces padded
  assert result["parameters"] > 0 and not result["errors"]
  assert digests(model_dir) == before   # sample and plan write nothing
  out, err = _works(capsys, "score", "--model_dir", model_dir, "--task", "kjv_ending",
                    "--limit", "4", "--shots", "0")
  assert "[score] kjv_ending 0-shot step" in out + err
  after = digests(model_dir)
  assert {k: v for k, v in after.items() if k in before} == before


@pytest.mark.parametrize("kind", KINDS)
def test_eval_works_on_every_kind_and_adds_files_only(runs, kind, capsys):
  model_dir = runs[kind]
  before = digests(model_dir)
  out, _ = _works(capsys, "eval", "--model_dir", model_dir, "--max_batches", "2",
                  *FEW_EXAMPLES)
  assert "[eval] wrote" in out
  after = digests(model_dir)
  assert {k: v for k, v in after.items() if k in before} == before
  assert "primer_mtf_run.json" not in after or kind != "binary"


@pytest.mark.parametrize("kind", ("finetuning", "binary"))
def test_compare_refuses_runs_it_cannot_count(runs, kind, tmp_path, capsys):
  _refused(capsys, "compare takes pretraining runs", "compare", runs["pretraining"],
           runs[kind], "--output", str(tmp_path))


@pytest.mark.parametrize("kind, message", [
    ("binary", "trained by t5_mesh_transformer; primer-mtf does not rewrite it"),
    ("finetuning", "holds a finetuning run, not a pretraining run")])
def test_train_refuses_a_run_of_another_kind_and_touches_nothing(runs, kind, message,
                                                                 capsys):
  before = digests(runs[kind])
  _refused(capsys, message, "train", "--model_dir", runs[kind], "--train_steps", "8")
  assert digests(runs[kind]) == before


def test_a_folder_that_is_no_run_is_one_line(tmp_path, capsys):
  _refused(capsys, "is not a primer-mtf run", "sample", "--model_dir", str(tmp_path),
           "--prompt", "x")
