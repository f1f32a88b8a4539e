"""End to end on CPU: train, eval, resume, a 2x2 mesh and T5's own binary."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import tensorflow.compat.v1 as tf

from conftest import REPO, read_progress, run_cli

pytestmark = pytest.mark.e2e


def _ok(result):
  assert result.returncode == 0, result.stderr[-3000:]
  return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """The README's main job at a reduced step count: tiny baseline on the KJV."""
  model_dir = str(tmp_path_factory.mktemp("runs") / "tiny")
  _ok(run_cli("train", "--model_dir", model_dir, "--train_steps", "200"))
  ev = _ok(run_cli("eval", "--model_dir", model_dir))
  return model_dir, ev


def test_validation_loss_falls_well_below_step_zero(trained):
  model_dir, ev = trained
  with open(os.path.join(model_dir, "eval_validation.json")) as f:
    table = json.load(f)
  assert [r["step"] for r in table] == [0, 100, 200]
  first, last = table[0], table[-1]
  # Untrained: about ln(4096) = 8.3 nats. 200 steps of the tiny model get far below.
  assert first["loss"] > 7.5
  assert last["loss"] < first["loss"] - 2.5, table
  assert last["token_accuracy"] > first["token_accuracy"] + 0.1
  assert abs(last["perplexity"] - 2.718281828 ** last["loss"]) < 1e-3 * last["perplexity"]
  assert "[eval] step 200 loss" in ev.stdout
  assert os.path.getsize(os.path.join(model_dir, "loss.png")) > 10000


def test_run_records_its_operative_config_and_progress(trained):
  model_dir, _ = trained
  with open(os.path.join(model_dir, "operative_config.gin")) as f:
    config = f.read()
  assert "corpus_task.corpus = 'kjv'" in config
  assert "sublayer_true_layer_norm" in config
  progress = read_progress(model_dir)
  assert progress[0]["step"] == 1 and progress[-1]["step"] == 200
  assert all(r["tokens_per_sec"] > 0 for r in progress)


def test_restart_resumes_from_the_last_checkpoint(trained, tmp_path):
  model_dir = str(tmp_path / "resumed")
  shutil.copytree(trained[0], model_dir)
  result = _ok(run_cli("train", "--model_dir", model_dir, "--train_steps", "210"))
  assert "resuming" in result.stderr and "model.ckpt-200" in result.stderr
  new = read_progress(model_dir)[len(read_progress(trained[0])):]
  assert new[0]["step"] == 201 and new[-1]["step"] == 210
  assert os.path.exists(os.path.join(model_dir, "model.ckpt-210.index"))
  # The graph is in the first start's events file only, not in the resumed one's.
  first, resumed = sorted(
      (os.path.join(model_dir, n) for n in os.listdir(model_dir)
       if n.startswith("events.out.tfevents.")), key=os.path.getmtime)
  assert _graphs_in(first) >= 1
  assert _graphs_in(resumed) == 0
  assert os.path.getsize(resumed) < os.path.getsize(first) / 50


def _graphs_in(events_file):
  return sum(bool(e.graph_def or e.meta_graph_def)
             for e in tf.train.summary_iterator(events_file))


def test_2x2_mesh_first_step_loss_equals_one_device(trained, tmp_path):
  """batch:2,model:2 on four virtual CPU devices, from the same initial weights."""
  model_dir, _ = trained
  init = os.path.join(model_dir, "model.ckpt-0")
  mesh_dir = str(tmp_path / "mesh2x2")
  _ok(run_cli("train", "--model_dir", mesh_dir, "--mesh", "cpu_2x2",
              "--train_steps", "1", "--gin_param",
              f"utils.run.init_checkpoint = '{init}'"))
  one_device = read_progress(model_dir)[0]["loss"]
  sharded = read_progress(mesh_dir)[0]["loss"]
  assert abs(sharded - one_device) <= 1e-5 * abs(one_device), (sharded, one_device)


def test_t5_mesh_transformer_binary_trains_the_same_model(tmp_path):
  binary = os.path.join(os.path.dirname(sys.executable), "t5_mesh_transformer")
  model_dir = str(tmp_path / "binary")
  result = subprocess.run(
      [binary, "--module_import=primer_mtf",
       f"--gin_location_prefix={os.path.join(REPO, 'gin')}/",
       "--gin_file=objectives/packed_lm.gin", "--gin_file=models/transformer.gin",
       "--gin_file=sizes/tiny.gin", "--gin_file=meshes/cpu.gin",
       "--gin_param=utils.run.train_steps = 3", f"--model_dir={model_dir}"],
      capture_output=True, text=True, timeout=900, env=dict(os.environ))
  assert result.returncode == 0, result.stderr[-3000:]
  assert "[train] step 3/3 loss" in result.stderr
  assert os.path.exists(os.path.join(model_dir, "model.ckpt-3.index"))
  with open(os.path.join(model_dir, "operative_config.gin")) as f:
    config = f.read()
  assert "primer_mtf.corpus_task" in config and "DenseReluDense.use_bias = True" in config


@pytest.mark.parametrize("model, objective", [
    ("primer_ez", "packed_lm"), ("primer", "packed_lm"),
    pytest.param("primer_as_released", "lm_as_released",   # the release's model
                 marks=pytest.mark.slow)])                 # and data
def test_primer_models_train_and_validation_loss_falls(model, objective, tmp_path):
  model_dir = str(tmp_path / model)
  _ok(run_cli("train", "--model_dir", model_dir, "--model", model,
              "--objective", objective, "--train_steps", "100"))
  _ok(run_cli("eval", "--model_dir", model_dir))
  with open(os.path.join(model_dir, "eval_validation.json")) as f:
    table = json.load(f)
  assert [r["step"] for r in table] == [0, 100]
  assert table[1]["loss"] < table[0]["loss"] - 2.0, table
  with open(os.path.join(model_dir, "operative_config.gin")) as f:
    config = f.read()
  assert "primer_mtf.MDHA" in config
  assert ("chunks_as_released" in config) == (objective == "lm_as_released")


def _checkpoint_bytes(model_dir):
  """The bytes of every training file: checkpoints, their index, graph, events."""
  out = {}
  for name in os.listdir(model_dir):
    path = os.path.join(model_dir, name)
    if name.startswith(("model.ckpt-", "checkpoint", "graph.pbtxt", "events.out")):
      with open(path, "rb") as f:
        out[name] = f.read()
  return out


def test_eval_skips_evaluated_checkpoints_and_never_writes_into_them(trained, tmp_path):
  model_dir = str(tmp_path / "evaluated_twice")
  shutil.copytree(trained[0], model_dir, ignore=shutil.ignore_patterns("eval*", "loss.png"))
  before = _checkpoint_bytes(model_dir)
  assert any(n.startswith("model.ckpt-200") for n in before)
  first = _ok(run_cli("eval", "--model_dir", model_dir))
  assert "3 checkpoints evaluated now, 0 evaluated before" in first.stdout
  with open(os.path.join(model_dir, "eval_validation.json")) as f:
    table = f.read()
  second = _ok(run_cli("eval", "--model_dir", model_dir))
  assert "0 checkpoints evaluated now, 3 evaluated before" in second.stdout
  assert "[eval] step 200 loss" in second.stdout
  with open(os.path.join(model_dir, "eval_validation.json")) as f:
    assert f.read() == table
  assert _checkpoint_bytes(model_dir) == before


@pytest.mark.slow
def test_eval_follow_evaluates_checkpoints_as_training_writes_them(tmp_path):
  model_dir = str(tmp_path / "followed")
  train = subprocess.Popen(
      [sys.executable, "-m", "primer_mtf", "train", "--model_dir", model_dir,
       "--train_steps", "30", "--gin_param", "utils.run.save_checkpoints_steps = 10"],
      cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    record = os.path.join(model_dir, "primer_mtf_run.json")
    for _ in range(600):   # the record is written before the first checkpoint
      if os.path.exists(record) or train.poll() is not None:
        break
      time.sleep(0.5)
    follow = _ok(run_cli("eval", "--model_dir", model_dir, "--follow",
                         "--poll_seconds", "1", "--timeout_seconds", "600"))
  finally:
    _, err = train.communicate(timeout=900)
  assert train.returncode == 0, err[-3000:]
  steps = [int(line.split()[2]) for line in follow.stdout.splitlines()
           if line.startswith("[eval] step ")]
  assert steps == sorted(steps) and steps[-1] == 30 and 0 in steps
  with open(os.path.join(model_dir, "eval_validation.json")) as f:
    assert [r["step"] for r in json.load(f)] == [0, 10, 20, 30]
