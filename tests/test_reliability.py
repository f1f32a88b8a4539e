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

# A NaN learning rate at step 11 of an otherwise healthy schedule, bound from the
# run's first start (a resume may not change the schedule): the update of step 11
# makes every weight NaN, so the loss of step 12 is the first that shows it.
NAN_AT_STEP_11 = ["--gin_param", "utils.run.learning_rate_schedule = "
                  "@primer_mtf.nan_learning_rate_at",
                  "--gin_param", "nan_learning_rate_at.schedule = "
                  "@learning_rate_schedules.truncated_rsqrt",
                  "--gin_param", "nan_learning_rate_at.steps = [11]"]


@pytest.mark.e2e
@pytest.mark.parametrize("save_every, message, newest_step", [
    (5, "the loss is nan at step 12", 10),   # the loss shows it first
    pytest.param(1, "a weight is not finite at step 11", 10,   # a save every step:
                 marks=pytest.mark.slow),    # the weights show it before the loss
])
def test_divergence_stops_with_one_line_and_the_newest_checkpoint_finite(
    tmp_path, save_every, message, newest_step):
  model_dir = str(tmp_path / "run")
  save = ["--gin_param", f"utils.run.save_checkpoints_steps = {save_every}",
          *NAN_AT_STEP_11]
  result = run_cli("train", "--model_dir", model_dir, "--train_steps", "10", *save)
  assert result.returncode == 0, result.stderr[-2000:]
  again = run_cli("train", "--model_dir", model_dir, "--train_steps", "10", *save)
  assert again.returncode == 0 and "is already at step 10 of 10: nothing to do" in \
      again.stderr, again.stderr[-2000:]
  diverged = run_cli("train", "--model_dir", model_dir, "--train_steps", "30", *save)
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


NAN_AT_STEP_5 = ["--gin_param", "utils.run.learning_rate_schedule = "
                 "@primer_mtf.nan_learning_rate_at",
                 "--gin_param", "nan_learning_rate_at.schedule = "
                 "@learning_rate_schedules.truncated_rsqrt",
                 "--gin_param", "nan_learning_rate_at.steps = [5]"]


@pytest.mark.e2e
def test_skip_mode_skips_the_bad_step_exactly_and_goes_on(tmp_path):
  """guards/skip_nonfinite_steps.gin: a NaN learning rate at step 5 makes every
  update of that step NaN; the step writes nothing, the run goes on and counts it."""
  model_dir = str(tmp_path / "run")
  result = run_cli("train", "--model_dir", model_dir, "--train_steps", "7",
                   "--gin_file", "guards/skip_nonfinite_steps.gin", "--gin_param",
                   "utils.run.save_checkpoints_steps = 1", *NAN_AT_STEP_5)
  assert result.returncode == 0, result.stderr[-2000:]
  assert ("[train] step 5: skipped, a value it would write is not finite "
          "(1 skipped so far)") in result.stderr
  ckpt = {s: tf.train.load_checkpoint(os.path.join(model_dir, f"model.ckpt-{s}"))
          for s in (3, 4, 5, 6)}
  names = sorted(ckpt[4].get_variable_to_shape_map())
  assert "skipped_steps" in names and any("_slot_" in n for n in names)

  def changed(a, b):
    return [n for n in names
            if not np.array_equal(ckpt[a].get_tensor(n), ckpt[b].get_tensor(n))]
  # Step 5 leaves every weight and optimizer slot as step 4 left it ...
  assert changed(4, 5) == ["global_step", "skipped_steps"]
  # ... while the steps around it change all of them but the counter.
  assert set(changed(3, 4)) == set(changed(5, 6)) == set(names) - {"skipped_steps"}
  assert [float(ckpt[s].get_tensor("skipped_steps")) for s in (4, 5, 6)] == [0, 1, 1]


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
