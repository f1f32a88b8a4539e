"""Planner memory estimate against measured peak RSS of real CPU training runs.

For each size it trains a few steps with ``primer-mtf train`` in a subprocess
(reduced batch and sequence length), reads the child's peak RSS, and puts it beside
``primer-mtf plan`` for the same settings. Writes ``planner_memory.json`` and
``planner_memory.png`` to --out.

    python benchmarks/planner_memory.py --sizes tiny small medium --out bench/
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

import primer_mtf  # pylint: disable=unused-import
from primer_mtf.planning import planner

GiB = 1 << 30


def measure(model, size, steps, bindings):
  """Peak RSS (bytes) of a real training run of ``steps`` steps."""
  with tempfile.TemporaryDirectory() as model_dir:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    argv = [sys.executable, "-m", "primer_mtf", "train", "--model_dir", model_dir,
            "--model", model, "--size", size, "--train_steps", str(steps)]
    for b in bindings:
      argv += ["--gin_param", b]
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode:
      raise SystemExit(f"{size}: training failed:\n{result.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
      raise SystemExit("runs must go from the smallest size up (ru_maxrss is a max)")
    losses = [l for l in result.stderr.splitlines() if l.startswith("[train]")]
    return peak * 1024, losses


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--model", default="primer")
  p.add_argument("--sizes", nargs="+", default=["tiny", "small", "medium"])
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--sequence_length", type=int, default=128)
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--out", default="bench")
  p.add_argument("--gin_param", action="append", default=[],
                 help="more bindings for every run")
  args = p.parse_args()
  bindings = [
      f"utils.run.sequence_length = {{'inputs': {args.sequence_length}, "
      f"'targets': {args.sequence_length}}}",
      f"utils.run.batch_size = ('sequences_per_batch', {args.batch})",
      "utils.run.save_checkpoints_steps = 1000000",
      "train_with_progress.every_n_steps = 1"] + args.gin_param
  os.makedirs(args.out, exist_ok=True)
  rows = []
  for size in args.sizes:
    plan = planner.plan(args.model, size, "cpu", vocab_size=4096, gin_params=bindings)
    peak, losses = measure(args.model, size, args.steps, bindings)
    row = {"size": size, "parameters": plan["parameters"],
           "planned_bytes": plan["memory_per_core"]["total"],
           "planned_model_bytes": plan["memory_per_core"]["model_total"],
           "measured_peak_rss_bytes": peak,
           "ratio_planned_to_measured": plan["memory_per_core"]["total"] / peak,
           "train_log": losses}
    rows.append(row)
    print(f"{size}: planned {row['planned_bytes'] / GiB:.2f} GiB, measured "
          f"{peak / GiB:.2f} GiB, ratio {row['ratio_planned_to_measured']:.2f}",
          flush=True)
  with open(os.path.join(args.out, "planner_memory.json"), "w") as f:
    json.dump(rows, f, indent=1)
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 4))
  x = [r["parameters"] / 1e6 for r in rows]
  ax.plot(x, [r["measured_peak_rss_bytes"] / GiB for r in rows], "o-",
          label="measured peak RSS")
  ax.plot(x, [r["planned_bytes"] / GiB for r in rows], "s--", label="planner")
  ax.set_xscale("log")
  ax.set_xlabel("parameters (millions)")
  ax.set_ylabel("GiB")
  ax.set_title(f"{args.model} on CPU, batch {args.batch} x {args.sequence_length}")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.savefig(os.path.join(args.out, "planner_memory.png"), dpi=100,
              bbox_inches="tight")


if __name__ == "__main__":
  main()
