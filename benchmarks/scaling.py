"""How Primer-EZ's speedup over vanilla T5 grows with model size, here and in the paper.

For each width, ``primer-mtf compare --train`` trains the vanilla transformer and
Primer-EZ side by side (same data, same order per seed, same tokens and steps;
tiny's 2 layers, 16 x 128 tokens a step, 300 steps: under one epoch of the
embedded corpus), evaluates them and reports the paper's speedup. This script
then puts the speedups against the model's training FLOPs a token, beside the
paper's points, and the speedup at every shorter budget (the training-length
axis) for each width. It writes ``scaling.json`` and ``scaling.png`` into --out.

    PYTHONPATH=. .venv/bin/python benchmarks/scaling.py --widths 128:3 256:2 384:1 512:1 \\
        --reuse 128=bench/compare_tiny_six --out bench/scaling

Width W has d_model W, heads of 64 (at least 4 heads: 4 x 32 at 128, which is
``tiny`` exactly), d_ff 4W. ``--reuse W=DIR`` takes the runs of an earlier
``compare --train`` of the same configuration (its ``runs`` folder is linked, and
compare resumes finished runs at no cost).
"""

import argparse
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENS_PER_STEP = 16 * 128

# The paper's speedups over vanilla T5 (design notes, section 1.5), at its stated
# parameter counts (32K vocabulary, tied embeddings); a token's training FLOPs
# taken as 6 x parameters.
PAPER = [
    {"where": "LM1B search task, ~35M", "params": 35e6,
     "speedup": {"primer_ez": 1.75, "primer": 1.72, "transformer_plusplus": 1.33}},
    {"where": "C4 medium, ~110M (1.7-1.9X)", "params": 110e6,
     "speedup": {"primer_ez": 1.8, "primer": 1.8}},
    {"where": "C4 large, ~537M", "params": 537e6, "speedup": {"primer": 4.0}},
]


def width_params(width):
  """gin bindings of a width (none at 128: the tiny size itself)."""
  if width == 128:
    return []
  heads = max(4, width // 64)
  return [f"d_model = {width}", f"num_heads = {heads}", f"d_kv = {width // heads}",
          f"d_ff = {4 * width}", f"d_ff_gated = {8 * width // 3}"]


def run_width(width, seeds, models, out, reuse=None, train_steps=None):
  folder = os.path.join(out, f"d{width}")
  os.makedirs(folder, exist_ok=True)
  if reuse and not os.path.exists(os.path.join(folder, "runs")):
    os.symlink(os.path.abspath(os.path.join(reuse, "runs")),
               os.path.join(folder, "runs"))
  command = [sys.executable, "-m", "primer_mtf", "compare", "--train", "--models",
             *models, "--seeds", str(seeds), "--size", "tiny", "--output", folder]
  if train_steps:
    command += ["--train_steps", str(train_steps)]
  for p in width_params(width):
    command += ["--gin_param", p]
  print(f"[scaling] d_model {width}: {' '.join(command[1:])}", file=sys.stderr,
        flush=True)
  subprocess.run(command, check=True, cwd=REPO)
  with open(os.path.join(folder, "compare.json")) as f:
    return json.load(f)


def summarise(width, seeds, summary):
  baseline = [r for r in summary["runs"] if r["group"] == summary["baseline"]]
  flops_per_step = baseline[0]["flops_per_step"]
  row = {"d_model": width, "seeds": seeds, "gin_param": width_params(width),
         "flops_per_step": flops_per_step,
         "flops_per_token": flops_per_step / TOKENS_PER_STEP,
         "baseline_final_loss": summary["target_loss"], "models": {}}
  for group, g in summary["groups"].items():
    if group == summary["baseline"]:
      continue
    # with one seed compare groups nothing: a group is a run, MODEL_seed0
    row["models"][group.rsplit("_seed", 1)[0]] = {
        "final_speedup": g["speedup"], "reached": g["reached"],
        "final_loss": [r["final_loss"] for r in summary["runs"]
                       if r["group"] == group],
        "by_budget": [{"budget_steps": e["budget_steps"], "flops": e["flops"],
                       "steps": e["steps"]} for e in summary["by_budget"][group]]}
  return row


def plot(rows, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 5))
  models = list(dict.fromkeys(m for r in rows for m in r["models"]))
  colors = {m: f"C{i + 1}" for i, m in enumerate(
      dict.fromkeys(models + ["primer_ez", "primer", "transformer_plusplus"]))}
  for m in models:
    pts = [(r["flops_per_token"], r["models"][m]["final_speedup"]["flops"])
           for r in rows if m in r["models"] and r["models"][m]["final_speedup"]["flops"]]
    if not pts:
      continue
    x = [p[0] for p in pts]
    mean = [p[1]["mean"] for p in pts]
    err = [[p[1]["mean"] - p[1]["min"] for p in pts],
           [p[1]["max"] - p[1]["mean"] for p in pts]]
    ax.errorbar(x, mean, yerr=err, fmt="o-", color=colors[m], capsize=4,
                label=f"{m}, here (300 steps, range over seeds)")
  for m in colors:
    pts = [(6 * p["params"], p["speedup"][m]) for p in PAPER if m in p["speedup"]]
    if pts:
      ax.plot([p[0] for p in pts], [p[1] for p in pts], "s--", color=colors[m],
              alpha=0.6, markerfacecolor="none", label=f"{m}, the paper (T5)")
  for p in PAPER:
    ax.annotate(p["where"], (6 * p["params"], max(p["speedup"].values())),
                textcoords="offset points", xytext=(-40, 8), fontsize=7)
  ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
  ax.set_xscale("log")
  ax.set_xlabel("training FLOPs a token (here: the planner's count; the paper: "
                "6 x parameters)")
  ax.set_ylabel("speedup over vanilla T5 in training FLOPs")
  ax.set_title("speedup to vanilla's final loss, against model size")
  ax.grid(alpha=0.3, which="both")
  ax.legend(fontsize=7)
  for i, r in enumerate(rows):
    for m in models:
      entries = [e for e in r["models"].get(m, {}).get("by_budget", []) if e["flops"]]
      if not entries:
        continue
      ax2.plot([e["budget_steps"] * TOKENS_PER_STEP for e in entries],
               [e["flops"]["mean"] for e in entries],
               ["o-", "s-", "^-", "d-"][i % 4], color=colors[m], markersize=3,
               alpha=0.4 + 0.6 * (i + 1) / len(rows),
               label=f"{m}, d_model {r['d_model']} ({r['seeds']} seeds)")
  ax2.axhline(1.0, color="gray", linestyle="--", linewidth=1)
  ax2.set_xlabel("training tokens of vanilla T5 (its loss there is the target)")
  ax2.set_ylabel("speedup in training FLOPs (mean over seeds)")
  ax2.set_title("speedup against training length")
  ax2.grid(alpha=0.3)
  ax2.legend(fontsize=7)
  fig.savefig(path, dpi=100, bbox_inches="tight")
  plt.close(fig)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--widths", nargs="+",
                      default=["128:3", "256:2", "384:1", "512:1"],
                      help="d_model:seeds for each width")
  parser.add_argument("--models", nargs="+", default=["transformer", "primer_ez"],
                      help="the baseline first")
  parser.add_argument("--reuse", nargs="*", default=[],
                      help="W=DIR: the runs of an earlier compare --train at width W")
  parser.add_argument("--train_steps", type=int, default=None)
  parser.add_argument("--out", default="bench/scaling")
  args = parser.parse_args(argv)
  reuse = dict(r.split("=", 1) for r in args.reuse)
  rows = []
  for spec in args.widths:
    width, seeds = (int(v) for v in spec.split(":"))
    summary = run_width(width, seeds, args.models, args.out, reuse.get(str(width)),
                        args.train_steps)
    rows.append(summarise(width, seeds, summary))
  result = {"command": "benchmarks/scaling.py " + " ".join(sys.argv[1:] if argv is None
                                                           else argv),
            "tokens_per_step": TOKENS_PER_STEP, "paper": PAPER, "widths": rows}
  with open(os.path.join(args.out, "scaling.json"), "w") as f:
    json.dump(result, f, indent=1)
  plot(rows, os.path.join(args.out, "scaling.png"))
  for r in rows:
    for m, v in r["models"].items():
      s = v["final_speedup"]["flops"]
      print(f"[scaling] d_model {r['d_model']} ({r['flops_per_token']:.3g} FLOPs a "
            f"token): {m} " + (f"{s['mean']:.2f}x ({s['min']:.2f}-{s['max']:.2f}, "
                               f"n={s['n']})" if s else "never reached"))


if __name__ == "__main__":
  main()
