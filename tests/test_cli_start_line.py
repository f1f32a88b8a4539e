"""A long command says it started at once in a terminal, before TensorFlow loads;
into a pipe a refused command's stderr stays its one error line."""
import os
import pty
import subprocess
import sys
import time

from conftest import REPO
from conftest import run_cli


def test_train_says_it_started_within_seconds_in_a_terminal(tmp_path):
  master, slave = pty.openpty()
  start = time.time()
  proc = subprocess.Popen(
      [sys.executable, "-m", "primer_mtf", "train", "--model_dir",
       str(tmp_path / "run"), "--train_steps", "1"],
      stdout=slave, stderr=slave, cwd=REPO, env=dict(os.environ))
  os.close(slave)
  try:
    first = b""
    while b"\n" not in first and time.time() - start < 60:
      first += os.read(master, 1024)
    elapsed = time.time() - start
  finally:
    proc.kill()
    proc.wait()
    os.close(master)
  assert first.startswith(b"[train] starting: loading TensorFlow"), first
  assert elapsed < 15, elapsed


def test_into_a_pipe_a_refused_command_prints_its_one_line_only(tmp_path):
  result = run_cli("eval", "--model_dir", str(tmp_path / "nothing"))
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2 and len(lines) == 1, result.stderr
  assert lines[0].startswith("primer-mtf: error: ")
