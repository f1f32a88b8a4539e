"""A long command says it started at once in a terminal, before TensorFlow loads;
into a pipe a refused command's stderr stays its one error line."""
import os
import pty
import select
import subprocess
import sys
import time

from conftest import REPO
from conftest import run_cli


def test_train_says_it_started_before_tensorflow_loads_in_a_terminal(tmp_path):
  # A stand-in tensorflow that never finishes importing: the line must come first.
  stub = tmp_path / "stub" / "tensorflow"
  stub.mkdir(parents=True)
  (stub / "__init__.py").write_text("import time\ntime.sleep(600)\n")
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [str(stub.parent), REPO, os.environ.get("PYTHONPATH", "")]))
  master, slave = pty.openpty()
  proc = subprocess.Popen(
      [sys.executable, "-m", "primer_mtf", "train", "--model_dir",
       str(tmp_path / "run"), "--train_steps", "1"],
      stdout=slave, stderr=slave, cwd=tmp_path, env=env)
  os.close(slave)
  try:
    first = b""
    deadline = time.monotonic() + 120
    while b"\n" not in first and time.monotonic() < deadline:
      if select.select([master], [], [], 1)[0]:
        first += os.read(master, 1024)
    still_importing = proc.poll() is None
  finally:
    proc.kill()
    proc.wait()
    os.close(master)
  assert first.startswith(b"[train] starting: loading TensorFlow"), first
  assert still_importing


def test_into_a_pipe_a_refused_command_prints_its_one_line_only(tmp_path):
  result = run_cli("eval", "--model_dir", str(tmp_path / "nothing"))
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2 and len(lines) == 1, result.stderr
  assert lines[0].startswith("primer-mtf: error: ")
