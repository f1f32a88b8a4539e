"""Every command on every kind of run: a pretraining run, a fine-tuning run and a
run trained by T5's own ``t5_mesh_transformer``. Each command works on it, or
refuses with one line and exit 2, and leaves the run's files as they were."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from conftest import digests
from conftest import run_cli

pytestmark = pytest.mark.e2e

STEPS = 4
SAVE_EVERY = ["--gin_param", "utils.run.save_checkpoints_steps = 2"]
FEW_EXAMPLES = ["--gin_param", "mesh_eval_dataset_fn.num_eval_examples = 8"]


def _ok(result):
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def _refused(result, message):
  assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and message in lines[0], result.stderr[-3000:]


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
def test_sample_score_and_plan_work_on_every_kind(runs, kind):
  model_dir = runs[kind]
  before = digests(model_dir)
  sample = _ok(run_cli("sample", "--model_dir", model_dir, "--prompt", "And God said",
                       "--max_new_tokens", "4"))
  assert sample.stdout.strip(), sample.stderr[-2000:]
  plan = _ok(run_cli("plan", "--model_dir", model_dir, "--json"))
  result = json.loads(plan.stdout)
  # the run's own vocabulary, read from its checkpoint: 4,096 pieces padded
  assert result["parameters"] > 0 and not result["errors"]
  assert digests(model_dir) == before   # sample and plan write nothing
  score = _ok(run_cli("score", "--model_dir", model_dir, "--task", "kjv_ending",
                      "--limit", "4", "--shots", "0"))
  assert "[score] kjv_ending 0-shot step" in score.stderr + score.stdout
  after = digests(model_dir)
  assert {k: v for k, v in after.items() if k in before} == before


@pytest.mark.parametrize("kind", KINDS)
def test_eval_works_on_every_kind_and_adds_files_only(runs, kind):
  model_dir = runs[kind]
  before = digests(model_dir)
  result = _ok(run_cli("eval", "--model_dir", model_dir, "--max_batches", "2",
                       *FEW_EXAMPLES))
  assert "[eval] wrote" in result.stdout
  after = digests(model_dir)
  assert {k: v for k, v in after.items() if k in before} == before
  assert "primer_mtf_run.json" not in after or kind != "binary"


@pytest.mark.parametrize("kind", ("finetuning", "binary"))
def test_compare_refuses_runs_it_cannot_count(runs, kind, tmp_path):
  _refused(run_cli("compare", runs["pretraining"], runs[kind], "--output",
                   str(tmp_path)), "compare takes pretraining runs")


@pytest.mark.parametrize("kind, message", [
    ("binary", "trained by t5_mesh_transformer; primer-mtf does not rewrite it"),
    ("finetuning", "holds a finetuning run, not a pretraining run")])
def test_train_refuses_a_run_of_another_kind_and_touches_nothing(runs, kind, message):
  before = digests(runs[kind])
  _refused(run_cli("train", "--model_dir", runs[kind], "--train_steps", "8"), message)
  assert digests(runs[kind]) == before


def test_a_folder_that_is_no_run_is_one_line(tmp_path):
  _refused(run_cli("sample", "--model_dir", str(tmp_path), "--prompt", "x"),
           "is not a primer-mtf run")
