"""Runs that nothing damages: divergence stops before a bad checkpoint, and a run
killed at random moments resumes to exactly its last step."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from conftest import REPO, read_progress, run_cli

HUGE_LR = ["--gin_param", "utils.run.learning_rate_schedule = "
           "@learning_rate_schedules.constant_learning_rate",
           "--gin_param", "constant_learning_rate.learning_rate = 1e30"]


@pytest.mark.e2e
@pytest.mark.parametrize("save_every, message, newest_step", [
    (5, "the loss is nan at step 12", 10),   # the loss shows it first
    pytest.param(1, "a weight is not finite at step 12", 11,   # a save every step:
                 marks=pytest.mark.slow),    # the weights show it before the loss
])
def test_divergence_stops_with_one_line_and_the_newest_checkpoint_finite(
    tmp_path, save_every, message, newest_step):
  model_dir = str(tmp_path / "run")
  save = ["--gin_param", f"utils.run.save_checkpoints_steps = {save_every}"]
  result = run_cli("train", "--model_dir", model_dir, "--train_steps", "10", *save)
  assert result.returncode == 0, result.stderr[-2000:]
  again = run_cli("train", "--model_dir", model_dir, "--train_steps", "10", *save)
  assert again.returncode == 0 and "is already at step 10 of 10: nothing to do" in \
      again.stderr, again.stderr[-2000:]
  diverged = run_cli("train", "--model_dir", model_dir, "--train_steps", "30", *save,
                     *HUGE_LR)
  assert diverged.returncode == 2, diverged.stderr[-2000:]
  errors = [l for l in diverged.stderr.splitlines() if "error" in l.lower()]
  assert len(errors) == 1 and errors[0].startswith("primer-mtf: error: training "
                                                   "diverged: "), diverged.stderr
  assert message in errors[0]
  assert f"model.ckpt-{newest_step}, is from before it" in errors[0]
  newest = tf.train.latest_checkpoint(model_dir)
  assert newest.endswith(f"model.ckpt-{newest_step}")
  reader = tf.train.load_checkpoint(newest)
  for name in reader.get_variable_to_shape_map():
    assert np.all(np.isfinite(reader.get_tensor(name))), name
  assert read_progress(model_dir)[-1]["step"] <= 12


@pytest.mark.slow
@pytest.mark.e2e
def test_five_random_kills_resume_to_the_exact_last_step(tmp_path):
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, "benchmarks", "kill_resume.py"), "--kills",
       "5", "--train_steps", "60", "--save_every", "10", "--out", str(tmp_path)],
      cwd=REPO, capture_output=True, text=True, timeout=3000,
      env=dict(os.environ, PYTHONPATH=REPO))
  assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-2000:])
  with open(tmp_path / "kill_resume.json") as f:
    summary = json.load(f)
  assert summary["final_step"] == 60 and summary["final_step_exact"]
  assert summary["every_checkpoint_evaluated"] and summary["checkpoints"][-1] == 60
  assert summary["kills"] >= 1
