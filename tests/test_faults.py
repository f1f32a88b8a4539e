"""Fault injection: a run survives the faults a real one meets, through the CLI.

* a newest checkpoint cut short (a .data shard truncated at a seeded random
  offset, as a partial copy of a run folder leaves it): ``train`` resumes from the
  one before and ends bit for bit where an uninterrupted run ends; ``eval`` skips
  it, ``sample`` refuses it, both with one line;
* a full disk (a small tmpfs, where the tests run as root and may mount one)
  during ``eval`` and during ``train``, then space freed: the next command works
  with no hand repair; where no tmpfs can be mounted, an eval events file cut
  mid-record, as a full disk leaves it;
* SIGKILL during ``eval`` and during ``finetune``, then the same command again.

Two concurrent trainers and a resume that adds or drops a binding are in
tests/test_run_guard.py.
"""
import contextlib
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import tensorflow.compat.v1 as tf

from conftest import differing_weights
from conftest import REPO
from conftest import run_cli
from primer_mtf.training import checkpoints

FLOAT32_CHECKPOINTS = ["--gin_param",
                       "utils.get_variable_dtype.master_dtype = 'float32'"]
SAVE_EVERY_2 = ["--gin_param", "utils.run.save_checkpoints_steps = 2"]
EVAL = ["--max_batches", "2"]
BASE_STEPS = 4        # checkpoints 0, 2, 4
EVAL_DIR_GLOB = "eval_*_validation_*"


def _ok(result):
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def _one_line(result, rc=2):
  """The command failed with exit ``rc`` (any non-zero for None) and one line."""
  if rc is None:
    assert result.returncode != 0, result.stderr[-3000:]
  else:
    assert result.returncode == rc, result.stderr[-3000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr[-3000:]
  return lines[0]


def _train(model_dir, steps, *flags):
  return _ok(run_cli("train", "--model_dir", model_dir, "--train_steps", str(steps),
                     *SAVE_EVERY_2, *FLOAT32_CHECKPOINTS, *flags))


def _eval(model_dir, *flags):
  return run_cli("eval", "--model_dir", model_dir, *EVAL, *flags)


def _copy(run, to):
  shutil.copytree(run, to)
  return str(to)


def _cut(checkpoint, seed):
  """Truncates a seeded random .data shard of ``checkpoint`` at a seeded random
  offset; returns (shard, offset)."""
  rng = random.Random(seed)
  shards = sorted(glob.glob(checkpoint + ".data-*"))
  shard = shards[rng.randrange(len(shards))]
  offset = rng.randrange(os.path.getsize(shard))
  with open(shard, "r+b") as f:
    f.truncate(offset)
  return shard, offset


def _steps(model_dir):
  return sorted(int(p.rsplit("-", 1)[1][:-len(".index")])
                for p in glob.glob(os.path.join(model_dir, "model.ckpt-*.index")))


def _global_step(checkpoint):
  return int(tf.train.load_checkpoint(checkpoint).get_tensor("global_step"))


def _losses(model_dir):
  with open(os.path.join(model_dir, "eval_validation.json")) as f:
    return {row["step"]: row["loss"] for row in json.load(f)}


def _leftovers(folder):
  """Temporary files of a write that did not finish."""
  return sorted(os.path.relpath(os.path.join(root, name), folder)
                for root, dirs, names in os.walk(folder)
                for name in names + dirs if ".tmp" in name or "_temp" in name)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
  """A tiny run with float32 masters: checkpoints 0, 2 and 4. Tests work on copies."""
  model_dir = str(tmp_path_factory.mktemp("faults") / "base")
  _train(model_dir, BASE_STEPS)
  assert _steps(model_dir) == [0, 2, 4]
  return model_dir


@pytest.fixture(scope="module")
def evaluated(base, tmp_path_factory):
  """A copy of ``base`` evaluated without a fault: the reference losses."""
  model_dir = _copy(base, tmp_path_factory.mktemp("faults") / "evaluated")
  _ok(_eval(model_dir))
  losses = _losses(model_dir)
  assert sorted(losses) == [0, 2, 4]
  return model_dir, losses


# -- a cut checkpoint


@pytest.mark.e2e
@pytest.mark.slow
def test_train_resumes_from_the_checkpoint_before_a_cut_one_bit_for_bit(
    base, tmp_path):
  """The newest checkpoint cut at a random offset: ``train`` to step 6 says in one
  line that it skips it and why, resumes from step 2, and ends at exactly step
  6 with the weights of a run never interrupted."""
  uninterrupted = str(tmp_path / "uninterrupted")
  _train(uninterrupted, 6)
  damaged = _copy(base, tmp_path / "damaged")
  newest = os.path.join(damaged, "model.ckpt-4")
  shard, offset = _cut(newest, seed=25)
  resumed = _train(damaged, 6)
  # one line names the checkpoint skipped and why ("skipping the N batches
  # already trained on" is another line, about the data stream)
  skipped = [line for line in resumed.stderr.splitlines() if "model.ckpt-4" in line]
  assert len(skipped) == 1, resumed.stderr[-3000:]
  assert ("skipping model.ckpt-4: it is damaged" in skipped[0]
          and "bytes of the" in skipped[0]), (skipped, shard, offset)
  assert f"resuming {damaged} from {os.path.join(damaged, 'model.ckpt-2')}" in (
      resumed.stderr), resumed.stderr[-3000:]
  assert _steps(damaged) == [0, 2, 4, 6]
  assert os.listdir(os.path.join(damaged, "damaged"))   # kept, not deleted
  final = os.path.join(damaged, "model.ckpt-6")
  assert _global_step(final) == 6
  with open(os.path.join(damaged, "train_progress.jsonl")) as f:
    assert json.loads(f.read().splitlines()[-1])["step"] == 6
  assert differing_weights(os.path.join(uninterrupted, "model.ckpt-6"), final) == []


@pytest.mark.e2e
def test_the_comparison_of_weights_sees_one_step_of_difference(base, tmp_path):
  """The control that shows the bit-for-bit check above can fail: checkpoint 4
  against checkpoint 2 of the same run differs in every trained weight."""
  del tmp_path
  differing = differing_weights(os.path.join(base, "model.ckpt-2"),
                                os.path.join(base, "model.ckpt-4"))
  assert "transformer/embedding" in differing and len(differing) > 10


@pytest.mark.e2e
@pytest.mark.slow
def test_eval_skips_and_sample_refuses_a_cut_checkpoint(base, evaluated, tmp_path):
  """``eval`` skips the cut newest checkpoint with one line and evaluates the
  others as a whole run would; ``sample`` refuses it with one line naming the
  whole ones, and samples from an older one when asked."""
  damaged = _copy(base, tmp_path / "damaged")
  _cut(os.path.join(damaged, "model.ckpt-4"), seed=11)
  result = _ok(_eval(damaged))
  skipped = [line for line in result.stderr.splitlines() if "model.ckpt-4" in line]
  assert len(skipped) == 1 and "model.ckpt-4: it is damaged" in skipped[0], (
      result.stderr[-3000:])
  assert _losses(damaged) == {s: v for s, v in evaluated[1].items() if s != 4}

  refused = run_cli("sample", "--model_dir", damaged, "--prompt", "In the beginning",
                    "--max_new_tokens", "2")
  line = _one_line(refused)
  assert "model.ckpt-4 is damaged" in line and "whole: 0, 2" in line, line
  older = _ok(run_cli("sample", "--model_dir", damaged, "--prompt",
                      "In the beginning", "--max_new_tokens", "2",
                      "--checkpoint_step", "2"))
  assert older.stdout.startswith("In the beginning"), older.stdout


# -- a full disk


@contextlib.contextmanager
def _tmpfs(folder, megabytes):
  """A tmpfs of ``megabytes`` mounted on ``folder``; skips where none can be."""
  os.makedirs(folder)
  if os.geteuid() != 0:
    pytest.skip("mounting a tmpfs needs root")
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m",
                            "tmpfs", folder], capture_output=True, text=True)
  if mounted.returncode:
    pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
  try:
    yield folder
  finally:
    subprocess.run(["umount", "-l", folder], check=False)


def _fill(folder, leave):
  """A file that leaves ``leave`` bytes free on ``folder``'s file system."""
  filler = os.path.join(folder, "filler")
  stat = os.statvfs(folder)
  free = stat.f_bavail * stat.f_frsize
  with open(filler, "wb") as f:
    os.posix_fallocate(f.fileno(), 0, max(0, free - leave))
  return filler


def _run_on_tmpfs(run, disk):
  """A copy of ``run`` (less its training events, which nothing reads) on ``disk``."""
  return shutil.copytree(run, os.path.join(disk, "run"),
                         ignore=shutil.ignore_patterns("events.out.tfevents.*"))


@pytest.fixture(scope="module")
def full_disk_eval(base, tmp_path_factory):
  """``eval`` of a copy of ``base`` on a tmpfs with 256 kB free (its events file
  is about 1.7 MB), then again once the space is freed: (model_dir, the failed
  eval, files left by it, the second eval)."""
  with _tmpfs(str(tmp_path_factory.mktemp("full_eval") / "disk"), 64) as disk:
    model_dir = _run_on_tmpfs(base, disk)
    filler = _fill(disk, leave=256 * 1024)
    failed = _eval(model_dir)
    leftovers = _leftovers(model_dir)
    os.remove(filler)
    again = _eval(model_dir)
    yield model_dir, failed, leftovers, again


@pytest.fixture(scope="module")
def full_disk_train(base, tmp_path_factory):
  """``train`` to step 6 of a copy of ``base`` on a tmpfs with 1 MB free (not
  room for the graph or a checkpoint), then again once the space is freed."""
  with _tmpfs(str(tmp_path_factory.mktemp("full_train") / "disk"), 64) as disk:
    model_dir = _run_on_tmpfs(base, disk)
    filler = _fill(disk, leave=1024 * 1024)
    command = ("train", "--model_dir", model_dir, "--train_steps", "6",
               *SAVE_EVERY_2, *FLOAT32_CHECKPOINTS)
    failed = run_cli(*command)
    leftovers = _leftovers(model_dir)
    os.remove(filler)
    again = run_cli(*command)
    yield model_dir, failed, leftovers, again


@pytest.mark.e2e
@pytest.mark.slow
def test_a_full_disk_during_eval_then_space_freed_the_next_eval_works(
    full_disk_eval, evaluated):
  model_dir, failed, _, again = full_disk_eval
  assert failed.returncode != 0, failed.stderr[-3000:]
  _ok(again)
  assert _losses(model_dir) == evaluated[1]
  assert "3 checkpoints evaluated now" in again.stdout, again.stdout
  moved = glob.glob(os.path.join(model_dir, EVAL_DIR_GLOB, "*.damaged"))
  # the events file the full disk cut short was moved aside, with one line
  assert len(moved) == 1, moved
  assert len([line for line in again.stderr.splitlines()
              if "is cut short; moved it to .damaged" in line]) == 1, again.stderr


@pytest.mark.e2e
@pytest.mark.slow
def test_a_full_disk_during_train_then_space_freed_the_rerun_resumes(
    full_disk_train):
  model_dir, failed, _, again = full_disk_train
  assert failed.returncode != 0, failed.stderr[-3000:]
  _ok(again)
  assert f"resuming {model_dir} from" in again.stderr, again.stderr[-3000:]
  assert _steps(model_dir)[-1] == 6
  assert _global_step(os.path.join(model_dir, "model.ckpt-6")) == 6
  assert not os.path.exists(os.path.join(model_dir, "primer_mtf_run.lock"))


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("fault", ["full_disk_eval", "full_disk_train"])
def test_a_full_disk_fails_with_one_line_and_leaves_no_temporary_file(
    fault, request):
  _, failed, leftovers, _ = request.getfixturevalue(fault)
  assert failed.returncode == 2, failed.stderr[-3000:]
  # the progress lines before it are the command's own; the failure is one line
  errors = [l for l in failed.stderr.splitlines() if not l.startswith("[")]
  assert len(errors) == 1 and errors[0].startswith("primer-mtf: error: the disk is "
                                                   "full"), failed.stderr[-3000:]
  assert leftovers == [], leftovers


@pytest.mark.e2e
def test_an_eval_events_file_cut_mid_record_is_moved_aside(evaluated, tmp_path):
  """What a full disk leaves, made by hand (runs where no tmpfs can be mounted):
  the eval events file cut inside a record. The next eval moves it aside with one
  line and evaluates its checkpoints again, to the same losses."""
  model_dir = _copy(evaluated[0], tmp_path / "cut")
  os.remove(os.path.join(model_dir, "eval_validation.json"))
  (events,) = glob.glob(os.path.join(model_dir, EVAL_DIR_GLOB, "events.out.*"))
  size = os.path.getsize(events)
  with open(events, "r+b") as f:
    f.truncate(size - 7)   # inside the last record (a summary of step 4)
  result = _ok(_eval(model_dir))
  moved = [line for line in result.stderr.splitlines() if "cut short" in line]
  assert len(moved) == 1, result.stderr[-3000:]
  assert os.path.exists(events + ".damaged")
  assert "3 checkpoints evaluated now" in result.stdout, result.stdout
  assert _losses(model_dir) == evaluated[1]


# -- SIGKILL


def _start(*args):
  return subprocess.Popen([sys.executable, "-m", "primer_mtf", *args], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill_when(process, ready, timeout=600):
  """SIGKILL ``process`` as soon as ``ready()``; fails if it ended before."""
  try:
    deadline = time.time() + timeout
    while not ready():
      assert process.poll() is None, "it ended before the fault"
      assert time.time() < deadline
      time.sleep(0.1)
  finally:
    process.send_signal(signal.SIGKILL)
    process.wait()


def _evaluated_steps(eval_dir):
  steps = set()
  for path in glob.glob(os.path.join(eval_dir, "events.out.*")):
    try:
      for event in tf.train.summary_iterator(path):
        if any(v.tag == "neg_log_perplexity" for v in event.summary.value):
          steps.add(event.step)
    except tf.errors.DataLossError:
      pass   # being written
  return steps


@pytest.mark.e2e
@pytest.mark.slow
def test_eval_killed_then_run_again_gives_the_losses_of_an_uninterrupted_one(
    base, evaluated, tmp_path):
  model_dir = _copy(base, tmp_path / "killed")
  process = _start("eval", "--model_dir", model_dir, *EVAL)
  _kill_when(process, lambda: any(
      _evaluated_steps(d) for d in glob.glob(os.path.join(model_dir, EVAL_DIR_GLOB))))
  (eval_dir,) = glob.glob(os.path.join(model_dir, EVAL_DIR_GLOB))
  assert _evaluated_steps(eval_dir) < {0, 2, 4}   # killed part way
  result = _ok(_eval(model_dir))
  assert _losses(model_dir) == evaluated[1], result.stdout


@pytest.mark.e2e
@pytest.mark.slow
def test_finetune_killed_then_run_again_takes_over_the_lock_and_ends_at_its_step(
    base, tmp_path):
  model_dir = str(tmp_path / "finetuned")
  command = ("finetune", "--pretrained_dir", base, "--task", "kjv_book",
             "--model_dir", model_dir, "--finetune_steps", "6", *SAVE_EVERY_2)
  final = BASE_STEPS + 6
  process = _start(*command)
  state = os.path.join(model_dir, "checkpoint")
  _kill_when(process, lambda: os.path.exists(state) and (
      f'"model.ckpt-{BASE_STEPS + 2}"' in open(state).read()))
  lock = os.path.join(model_dir, "primer_mtf_run.lock")
  with open(lock) as f:
    assert json.load(f)["pid"] == process.pid   # left by the killed process
  killed_at = checkpoints.step_of(tf.train.latest_checkpoint(model_dir))
  assert BASE_STEPS < killed_at < final
  result = _ok(run_cli(*command))
  assert "in use" not in result.stderr
  assert _steps(model_dir)[-1] == final
  # the rerun's first logged step follows the killed run's newest checkpoint
  with open(os.path.join(model_dir, "train_progress.jsonl")) as f:
    logged = [json.loads(line)["step"] for line in f]
  assert logged[-2:] == [killed_at + 1, final], logged
  assert _global_step(os.path.join(model_dir, f"model.ckpt-{final}")) == final
  assert not os.path.exists(lock)


# -- what a write cut short leaves


def test_the_temporary_files_of_unfinished_writes_are_removed(tmp_path):
  """TensorFlow's atomic write leaves NAME.tmp<uuid hex> when the write itself
  fails (a full disk during train left graph.pbtxt.tmp<hex>); its sharded saver
  leaves model.ckpt-N_temp/; ours leave NAME.tmp-<pid> where a kill stopped them."""
  from primer_mtf import files  # pylint: disable=g-import-not-at-top
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  leftovers = ["graph.pbtxt.tmp0c1c401dec494b6eae6862e52b3ed0de",
               "model.ckpt-6.meta.tmp" + "a" * 32,
               f"eval_validation.json.tmp-{dead.pid}"]
  kept = ["graph.pbtxt", "model.ckpt-6.meta", "notes.tmp", "a.tmp12",
          f"primer_mtf_run.json.tmp-{os.getpid()}", "model.ckpt-6.index"]
  for name in leftovers + kept:
    (tmp_path / name).write_text("x")
  (tmp_path / "model.ckpt-8_temp").mkdir()
  (tmp_path / "model.ckpt-8_temp" / "part-00000-of-00002.index").write_text("x")
  (tmp_path / "eval_x").mkdir()
  (tmp_path / "eval_x" / ("events.tmp" + "b" * 32)).write_text("x")   # not a subfolder
  removed = files.remove_partial_writes(str(tmp_path))
  assert removed == sorted(leftovers + ["model.ckpt-8_temp"])
  assert sorted(os.listdir(tmp_path)) == sorted(kept + ["eval_x"])
  assert os.listdir(tmp_path / "eval_x")
