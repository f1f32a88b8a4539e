"""Progress, Ctrl-C and fine-tune eval through the CLI, as a user runs them."""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, run_cli

pytestmark = pytest.mark.e2e


def _ok(result):
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def test_ctrl_c_stops_after_the_step_with_its_checkpoint_and_a_rerun_resumes(
    tmp_path):
  model_dir = str(tmp_path / "interrupted")
  train = subprocess.Popen(
      [sys.executable, "-m", "primer_mtf", "train", "--model_dir", model_dir,
       "--train_steps", "500"], cwd=REPO, stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE, text=True, env=dict(os.environ))
  lines = []
  try:
    for line in train.stderr:
      lines.append(line)
      if line.startswith("[train] step 1/"):
        train.send_signal(signal.SIGINT)
        break
    _, rest = train.communicate(timeout=900)
  finally:
    if train.poll() is None:
      train.kill()
  lines += rest.splitlines(keepends=True)
  text = "".join(lines)
  assert train.returncode not in (0, None), text[-3000:]
  assert "[train] Ctrl-C: stopping after the current step" in text, text[-3000:]
  stopped = [l for l in lines if l.rstrip().endswith("stopping here (Ctrl-C)")]
  assert len(stopped) == 1, text[-3000:]
  step = int(re.match(r"\[train\] step (\d+)/500", stopped[0]).group(1))
  assert 1 <= step < 500
  assert os.path.exists(os.path.join(model_dir, f"model.ckpt-{step}.index"))
  assert not os.path.exists(os.path.join(model_dir, "primer_mtf_run.lock"))
  resumed = _ok(run_cli("train", "--model_dir", model_dir, "--train_steps",
                        str(step + 2)))
  assert f"model.ckpt-{step}" in resumed.stderr and "resuming" in resumed.stderr
  assert f"[train] step {step + 2}/{step + 2} loss" in resumed.stderr


def test_train_names_the_model_as_the_graph_builds(tmp_path):
  result = _ok(run_cli("train", "--model_dir", str(tmp_path / "named"), "--model",
                       "primer_ez", "--train_steps", "2"))
  lines = result.stderr.splitlines()
  building = [i for i, l in enumerate(lines) if l.startswith(
      "[train] building the graph of primer_ez tiny (corpus kjv, 4,096-piece "
      "vocabulary)")]
  started = [i for i, l in enumerate(lines)
             if l.startswith("[train] graph built and session started in ")]
  first = [i for i, l in enumerate(lines) if l.startswith("[train] step 1/2 ")]
  assert building and started and first, result.stderr[-3000:]
  assert building[0] < started[0] < first[0]
  assert lines[first[0]].endswith("tokens/s and ETA from the next report)")
  assert "ETA 0:" not in lines[first[0]]              # no ETA from the first step
  assert "[train] finished at step 2 of 2; newest checkpoint model.ckpt-2" in (
      result.stderr)


def test_finetune_eval_is_kept_by_the_number_of_examples(tmp_path):
  """16 examples, then 32: the second evaluates again, into its own folder, and
  each row says its count; accuracy is a fraction."""
  pretrained = str(tmp_path / "pretrained")
  _ok(run_cli("train", "--model_dir", pretrained, "--train_steps", "2"))
  tuned = str(tmp_path / "tuned")
  _ok(run_cli("finetune", "--pretrained_dir", pretrained, "--task", "kjv_book",
              "--model_dir", tuned, "--finetune_steps", "1"))
  table = {}
  for n in (16, 32, 16):
    result = _ok(run_cli("eval", "--model_dir", tuned, "--gin_param",
                         f"mesh_eval_dataset_fn.num_eval_examples = {n}"))
    with open(os.path.join(tuned, "eval_validation.json")) as f:
      table[n] = json.load(f)
    assert [r["num_examples"] for r in table[n]] == [n, n]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in table[n])
    assert os.path.isdir(os.path.join(tuned, f"validation_eval_{n}"))
    if n == 32:
      assert "2 checkpoints evaluated now, 0 evaluated before" in result.stdout
      assert "[eval] checkpoint 1/2 done: step 2 accuracy" in result.stderr
      assert "[eval] checkpoint 2/2 done: step 3 accuracy" in result.stderr
  # back to 16: nothing new, the 16-example results again
  assert "0 checkpoints evaluated now, 2 evaluated before" in result.stdout
  assert table[16] == json.load(open(os.path.join(tuned, "eval_validation.json")))
  (targets,) = glob.glob(os.path.join(tuned, "validation_eval_32", "*_targets"))
  with open(targets) as f:
    assert len(f.read().splitlines()) == 32
