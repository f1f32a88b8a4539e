"""Kill and resume: SIGKILL a tiny training run at random moments, restarting it
each time, then check that it ended at exactly its last step and that every
checkpoint restores and evaluates.

    PYTHONPATH=. .venv/bin/python benchmarks/kill_resume.py --kills 20 --out bench/

A kill lands anywhere: during start-up, mid-step, mid-checkpoint. Steps lost per
kill are the steps this start of the run had reported done when it was killed,
less the step of its newest checkpoint then (the restart resumes from that
checkpoint); a kill during start-up loses none. Writes
kill_resume.json with every kill and the totals.
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args):
  return [sys.executable, "-m", "primer_mtf", *args]


def _newest_step(model_dir):
  path = os.path.join(model_dir, "checkpoint")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    first = f.readline()
  return int(first.rsplit("-", 1)[1].strip().strip('"'))


def _progress_size(model_dir):
  path = os.path.join(model_dir, "train_progress.jsonl")
  return os.path.getsize(path) if os.path.exists(path) else 0


def _reported_step(model_dir, since):
  """The last step this start reported done (the log from byte ``since``)."""
  path = os.path.join(model_dir, "train_progress.jsonl")
  if not os.path.exists(path):
    return None
  steps = []
  with open(path) as f:
    f.seek(since)
    for line in f:
      try:
        steps.append(json.loads(line)["step"])
      except (ValueError, KeyError):
        pass   # a line cut by the kill
  return max(steps) if steps else None


def _wait_for_first_step(proc, model_dir, since, timeout=1800):
  """Seconds until this start reports its first step (None if it exited)."""
  start = time.time()
  while proc.poll() is None and time.time() - start < timeout:
    if _reported_step(model_dir, since) is not None:
      return time.time() - start
    time.sleep(0.2)
  return None


def run(kills, train_steps, save_every, max_delay, startup_share, seed, model_dir):
  """Kills the run ``kills`` times: a share of the kills during start-up (1-10 s
  after launch), the rest up to ``max_delay`` s after its first step, when it
  trains and writes checkpoints. The machine's load sets how long start-up takes,
  so the moments are drawn from the run's own progress, not from the clock."""
  rng = random.Random(seed)
  train = _cli("train", "--model_dir", model_dir, "--train_steps", str(train_steps),
               "--gin_param", f"utils.run.save_checkpoints_steps = {save_every}",
               "--gin_param", "train_with_progress.every_n_steps = 1")
  records = []
  for i in range(kills):
    before = _newest_step(model_dir)
    since = _progress_size(model_dir)
    proc = subprocess.Popen(train, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    if rng.random() < startup_share:
      moment, delay = "start-up", rng.uniform(1.0, 10.0)
      time.sleep(delay)
    else:
      moment, delay = "training", rng.uniform(0.0, max_delay)
      started = _wait_for_first_step(proc, model_dir, since)
      if started is not None:
        time.sleep(delay)
        delay += started
    if proc.poll() is not None:
      if proc.returncode:
        raise SystemExit(f"the run failed before its kill:\n{proc.stderr.read()[-2000:]}")
      print(f"[kill {i + 1}/{kills}] the run had finished", flush=True)
      break
    reported = _reported_step(model_dir, since)
    newest = _newest_step(model_dir)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # killed before its first step: nothing trained since the restart, none lost
    lost = 0 if reported is None else max(reported - (newest or 0), 0)
    records.append({"kill": i + 1, "moment": moment, "after_seconds": round(delay, 2),
                    "resumed_from": before, "reported_step": reported,
                    "newest_checkpoint": newest, "steps_lost": lost})
    print(f"[kill {i + 1}/{kills}] {moment}, {delay:.1f} s after launch: step "
          f"{reported}, newest checkpoint {newest}", flush=True)
  final = subprocess.run(train, cwd=REPO, capture_output=True, text=True)
  if final.returncode:
    raise SystemExit(f"the final restart failed:\n{final.stderr[-2000:]}")
  return records


def check(model_dir):
  """Every checkpoint restores with finite weights; eval evaluates each."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  steps = sorted(int(n[len("model.ckpt-"):-len(".index")]) for n in os.listdir(model_dir)
                 if n.startswith("model.ckpt-") and n.endswith(".index"))
  for step in steps:
    reader = tf.train.load_checkpoint(os.path.join(model_dir, f"model.ckpt-{step}"))
    for name in reader.get_variable_to_shape_map():
      assert np.all(np.isfinite(reader.get_tensor(name))), (step, name)
  result = subprocess.run(_cli("eval", "--model_dir", model_dir), cwd=REPO,
                          capture_output=True, text=True)
  if result.returncode:
    raise SystemExit(f"eval failed:\n{result.stderr[-2000:]}")
  with open(os.path.join(model_dir, "eval_validation.json")) as f:
    evaluated = [r["step"] for r in json.load(f)]
  return steps, evaluated


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--kills", type=int, default=20)
  p.add_argument("--train_steps", type=int, default=400)
  p.add_argument("--save_every", type=int, default=20)
  p.add_argument("--max_delay", type=float, default=15.0,
                  help="kills in training: up to this long after the first step")
  p.add_argument("--startup_share", type=float, default=0.2,
                 help="the share of kills during start-up")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", default="bench")
  args = p.parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  with tempfile.TemporaryDirectory() as tmp:
    model_dir = os.path.join(tmp, "run")
    start = time.time()
    kills = run(args.kills, args.train_steps, args.save_every, args.max_delay,
                args.startup_share, args.seed, model_dir)
    steps, evaluated = check(model_dir)
    lost = [k["steps_lost"] for k in kills]
    summary = {
        "kills": len(kills), "train_steps": args.train_steps,
        "save_every": args.save_every, "final_step": _newest_step(model_dir),
        "final_step_exact": _newest_step(model_dir) == args.train_steps,
        "checkpoints": steps, "evaluated": evaluated,
        "every_checkpoint_evaluated": steps == evaluated,
        "steps_lost_mean": float(np.mean(lost)) if lost else 0.0,
        "steps_lost_max": max(lost) if lost else 0,
        "seconds": round(time.time() - start, 1), "kill_log": kills}
  path = os.path.join(args.out, "kill_resume.json")
  with open(path, "w") as f:
    json.dump(summary, f, indent=1)
  print(json.dumps({k: v for k, v in summary.items() if k != "kill_log"}))
  ok = summary["final_step_exact"] and summary["every_checkpoint_evaluated"]
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
