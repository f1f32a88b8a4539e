"""Nothing damages a run: a resume runs the recorded configuration or is refused,
and one process writes a run at a time."""
import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import REPO
from conftest import digests
from conftest import run_cli
from primer_mtf.commands import run as run_lib
from primer_mtf.errors import UsageError


# -- the rules, on their own


@pytest.mark.parametrize("name, allowed", [
    ("run.train_steps", True), ("utils.run.train_steps", True),
    ("run.save_checkpoints_steps", True), ("run.mesh_shape", True),
    ("accelerator.kind", True), ("train_with_progress.every_n_steps", True),
    ("mesh_eval_dataset_fn.num_eval_examples", True),
    ("DenseReluDense.activation", False), ("d_model", False),
    ("train_with_progress.seed", False), ("run.learning_rate_schedule", False),
    ("decoder/Unitransformer.label_smoothing", False), ("run.sequence_length", False)])
def test_what_a_resume_may_change(name, allowed):
  assert run_lib.resumable(name) is allowed


def test_a_changed_or_dropped_binding_is_named():
  recorded = {"DenseReluDense.activation": "'relu'", "run.train_steps": "20",
              "DenseReluDense.use_bias": "False"}
  run_lib.check_same_configuration("run", recorded,
                                   dict(recorded, **{"run.train_steps": "30"}))
  with pytest.raises(UsageError, match=r"DenseReluDense.activation = 'relu' "
                                       r"\(now 'gelu'\)"):
    run_lib.check_same_configuration(
        "run", recorded, dict(recorded, **{"DenseReluDense.activation": "'gelu'"}))
  dropped = {k: v for k, v in recorded.items() if k != "DenseReluDense.use_bias"}
  with pytest.raises(UsageError, match=r"use_bias = False \(now \(unbound\)\)"):
    run_lib.check_same_configuration("run", recorded, dropped)


def test_one_writer_holds_the_lock_and_releases_it(tmp_path):
  model_dir = str(tmp_path / "run")
  with run_lib.writer_lock(model_dir):
    with open(os.path.join(model_dir, run_lib.LOCK)) as f:
      holder = json.load(f)
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
  assert not os.path.exists(os.path.join(model_dir, run_lib.LOCK))


def test_a_live_holder_is_named_and_its_lock_kept(tmp_path):
  model_dir = tmp_path / "run"
  model_dir.mkdir()
  holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    lock = model_dir / run_lib.LOCK
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid,
                                "since": "then"}))
    before = lock.read_bytes()
    with pytest.raises(UsageError, match=f"in use by process {holder.pid} on "):
      with run_lib.writer_lock(str(model_dir)):
        pass
    assert lock.read_bytes() == before
  finally:
    holder.kill()
    holder.wait()


def test_a_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
  model_dir = tmp_path / "run"
  model_dir.mkdir()
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  (model_dir / run_lib.LOCK).write_text(json.dumps(
      {"host": socket.gethostname(), "pid": dead.pid, "since": "then"}))
  with run_lib.writer_lock(str(model_dir)):
    with open(model_dir / run_lib.LOCK) as f:
      assert json.load(f)["pid"] == os.getpid()


def test_another_hosts_lock_is_not_taken(tmp_path):
  model_dir = tmp_path / "run"
  model_dir.mkdir()
  (model_dir / run_lib.LOCK).write_text(json.dumps(
      {"host": "another-host", "pid": 1, "since": "then"}))
  with pytest.raises(UsageError, match="on another-host .*delete"):
    with run_lib.writer_lock(str(model_dir)):
      pass


# -- the commands


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp("guard") / "run")
  result = run_cli("train", "--model_dir", model_dir, "--train_steps", "2",
                   "--gin_param", "DenseReluDense.use_bias = False")
  assert result.returncode == 0, result.stderr[-3000:]
  return model_dir


def _refused(result, message):
  assert result.returncode == 2, result.stderr[-3000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and message in lines[0], result.stderr[-3000:]


@pytest.mark.e2e
@pytest.mark.parametrize("change, named", [
    (["--gin_param", "DenseReluDense.activation = 'gelu'"],
     "DenseReluDense.activation = 'relu' (now 'gelu')"),
    ([], "DenseReluDense.use_bias = False (now True)")])   # the binding dropped
def test_a_resume_that_changes_the_model_is_refused_and_touches_nothing(
    trained, change, named):
  before = digests(trained)
  _refused(run_cli("train", "--model_dir", trained, "--train_steps", "4", *change),
           named)
  assert digests(trained) == before


@pytest.mark.e2e
def test_two_trainers_on_one_run_exactly_one_runs(tmp_path):
  model_dir = str(tmp_path / "run")
  command = [sys.executable, "-m", "primer_mtf", "train", "--model_dir", model_dir,
             "--train_steps", "40"]
  procs = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for _ in range(2)]
  outs = [p.communicate(timeout=900) for p in procs]
  codes = sorted(p.returncode for p in procs)
  assert codes == [0, 2], [o[1][-2000:] for o in outs]
  loser = outs[[p.returncode for p in procs].index(2)][1]
  assert "is in use by process" in loser and len(loser.strip().splitlines()) == 1
  with open(os.path.join(model_dir, "train_progress.jsonl")) as f:
    steps = [json.loads(line)["step"] for line in f]
  assert steps == sorted(set(steps)), steps    # one writer: no step twice
  assert not os.path.exists(os.path.join(model_dir, run_lib.LOCK))
