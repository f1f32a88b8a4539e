"""Seeded runs and exact resume: the same seed writes the same checkpoints, and a
run killed mid-epoch continues its data stream where it stopped.

The checkpoints compared are float32 (``master_dtype``): mesh-tensorflow's default
bfloat16 checkpoints round the weights, so a resumed run would differ from an
uninterrupted one in the last bits even on the same batches.
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import checkpoint_weights
from conftest import differing_weights
from conftest import REPO, run_cli

FLOAT32_CHECKPOINTS = "utils.get_variable_dtype.master_dtype = 'float32'"
SAVE_EVERY_2 = "utils.run.save_checkpoints_steps = 2"


def _train(model_dir, steps, *flags):
  result = run_cli("train", "--model_dir", model_dir, "--train_steps", str(steps),
                   "--gin_param", SAVE_EVERY_2, "--gin_param", FLOAT32_CHECKPOINTS,
                   *flags)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp("seeded") / "a")
  _train(model_dir, 8)
  return model_dir


@pytest.mark.e2e
def test_the_same_seed_writes_bit_identical_checkpoints(uninterrupted, tmp_path):
  again = str(tmp_path / "b")
  _train(again, 2)
  assert differing_weights(os.path.join(uninterrupted, "model.ckpt-0"),
                           os.path.join(again, "model.ckpt-0")) == []
  assert differing_weights(os.path.join(uninterrupted, "model.ckpt-2"),
                           os.path.join(again, "model.ckpt-2")) == []
  other = str(tmp_path / "c")
  _train(other, 2, "--seed", "7")
  # another seed: every randomly initialised weight differs (only the constant
  # ones, norms and Adafactor's zero slots, agree at step 0)
  first = checkpoint_weights(os.path.join(uninterrupted, "model.ckpt-0"))
  random = sorted(n for n, w in first.items() if np.unique(w).size > 1)
  assert "transformer/embedding" in random and len(random) >= 10
  assert differing_weights(os.path.join(uninterrupted, "model.ckpt-0"),
                           os.path.join(other, "model.ckpt-0")) == random


@pytest.mark.e2e
def test_a_killed_run_resumes_with_the_batches_it_would_have_read(uninterrupted,
                                                                  tmp_path):
  """SIGKILL once checkpoint 4 exists (mid-epoch: an epoch of the KJV is about 500
  steps), resume to step 8: the weights equal the uninterrupted run's, which
  they do only if steps 5-8 read the same batches."""
  killed = str(tmp_path / "killed")
  command = [sys.executable, "-m", "primer_mtf", "train", "--model_dir", killed,
             "--train_steps", "1000", "--gin_param", SAVE_EVERY_2,
             "--gin_param", FLOAT32_CHECKPOINTS]
  process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 600
    while not os.path.exists(os.path.join(killed, "model.ckpt-4.index")):
      assert process.poll() is None and time.time() < deadline
      time.sleep(0.2)
  finally:
    process.send_signal(signal.SIGKILL)
    process.wait()
  resumed = _train(killed, 8)
  assert "skipping the" in resumed.stderr
  assert differing_weights(os.path.join(uninterrupted, "model.ckpt-8"),
                    os.path.join(killed, "model.ckpt-8")) == []


@pytest.mark.e2e
def test_without_the_skip_a_resume_replays_the_first_batches(uninterrupted, tmp_path):
  """The control that shows the test above can fail. The skip is turned off from
  the run's first start: a resume may not change it, since it changes the data."""
  replayed = str(tmp_path / "replayed")
  no_skip = ("--gin_param", "utils.run.skip_seen_data = False")
  _train(replayed, 4, *no_skip)
  _train(replayed, 8, *no_skip)
  assert differing_weights(os.path.join(uninterrupted, "model.ckpt-4"),
                    os.path.join(replayed, "model.ckpt-4")) == []
  assert len(differing_weights(os.path.join(uninterrupted, "model.ckpt-8"),
                        os.path.join(replayed, "model.ckpt-8"))) > 10
