"""The speedup under a learning rate that decays to the budget, one run a budget.

``benchmarks/scaling.py --schedule decay`` trains both models once for each budget
B, with the learning rate falling linearly to 0 at step B: each run's final loss is
the loss of a whole schedule, as scaling-law studies measure, not a point taken
mid-schedule from a longer run. The speedup at budget B is then B* / B, where B* is
the budget at which the baseline's final loss falls to the model's final loss at B,
interpolated linearly in log(budget) between the baseline's budgets
(``compare.compute_to_reach``). Outside the baseline's budgets it is not
extrapolated: the record holds null.

Beside it, for the same budgets, the by-budget speedup of the constant-rate runs
(the paper's rsqrt schedule, constant through any run under 10,000 steps), read
from their scaling record: if the two agree, the by-budget figures of the study
are not an artefact of a learning rate that never decays.

    PYTHONPATH=. .venv/bin/python benchmarks/decay_check.py \\
        --root benchmarks/results/decay_to_budget_kjv_d128 \\
        --budgets 500 1000 2000 3000 --corpus kjv --width 128 \\
        --rsqrt_record benchmarks/results/scaling_2000_steps/kjv/scaling.json \\
        --out benchmarks/results/decay_to_budget_kjv_d128/decay_check

The runs of each budget are those ``scaling.py --archive`` kept (their records and
evaluated curves), so the record can be written again without the weights.
"""

import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.scaling import TOKENS_PER_STEP  # pylint: disable=g-import-not-at-top,wrong-import-position
from primer_mtf import files  # pylint: disable=g-import-not-at-top,wrong-import-position
from primer_mtf.commands import compare  # pylint: disable=g-import-not-at-top,wrong-import-position


def budget_speedups(budgets, baseline_losses, model_losses):
  """{budget: speedup or None}: the baseline budget that reaches the model's final
  loss, over the model's budget. None where that budget lies outside the
  baseline's: past its largest, or at or before its smallest (a bound, not a
  measurement)."""
  order = sorted(range(len(budgets)), key=lambda i: budgets[i])
  steps = [float(budgets[i]) for i in order]
  losses = [baseline_losses[i] for i in order]
  out = {}
  for budget, loss in zip(budgets, model_losses):
    reached = None if loss >= losses[0] else compare.compute_to_reach(
        steps, losses, loss)
    out[budget] = None if reached is None else reached / budget
  return out


def final_loss(run_dir, budget):
  """The validation loss a run reached at its budget (None if not evaluated)."""
  path = os.path.join(run_dir, "eval_validation.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    rows = [r for r in json.load(f) if r["step"] == budget]
  return rows[-1]["loss"] if rows else None


def read_decay_runs(root, corpus, width, budgets, models, seed):
  """{model: [final loss at each budget]} of the decay runs under ``root``."""
  out = {}
  for model in models:
    out[model] = [final_loss(os.path.join(root, f"b{b}", corpus, f"d{width}", "runs",
                                          f"{model}_seed{seed}"), b)
                  for b in budgets]
  return out


def rsqrt_speedups(record_path, width, model, budgets):
  """{budget: mean FLOPs speedup} of the constant-rate study at those budgets."""
  if not record_path:
    return {}
  if not os.path.isfile(record_path):
    sys.exit(f"decay_check: no record at --rsqrt_record {record_path}: give the "
             "scaling.json that benchmarks/scaling.py wrote for the corpus, or leave "
             "the flag out")
  with open(record_path) as f:
    record = json.load(f)
  rows = [r for r in record["widths"] if r["d_model"] == width]
  if not rows or model not in rows[0]["models"]:
    return {}
  by_budget = {e["budget_steps"]: e["flops"]["mean"]
               for e in rows[0]["models"][model]["by_budget"] if e["flops"]}
  return {b: by_budget.get(b) for b in budgets}


def plot(budgets, losses, decay, rsqrt, path, title):
  """Left: each model's final loss against its budget under the decaying rate.
  Right: the speedup at each budget, decaying and constant rate."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
  for model, values in losses.items():
    pts = [(b, v) for b, v in zip(budgets, values) if v is not None]
    left.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=model)
  left.set_xscale("log")
  left.set_xlabel("budget (steps; the rate reaches 0 at the last)")
  left.set_ylabel("final validation loss")
  left.legend()
  for label, values, style in (("decay to the budget", decay, "o-"),
                               ("constant rate (rsqrt), by budget", rsqrt, "s--")):
    pts = [(b, v) for b, v in values.items() if v is not None]
    if pts:
      right.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
  right.axhline(1.0, color="gray", lw=0.8)
  right.set_xscale("log")
  right.set_xlabel("budget (steps)")
  right.set_ylabel("speedup over the baseline")
  right.legend()
  fig.suptitle(title)
  fig.tight_layout()
  files.save_figure(fig, path)
  plt.close(fig)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--root", required=True,
                      help="holds bB/CORPUS/dW/runs for each budget B")
  parser.add_argument("--budgets", type=int, nargs="+", required=True)
  parser.add_argument("--corpus", default="kjv")
  parser.add_argument("--width", type=int, default=128)
  parser.add_argument("--models", nargs=2, default=["transformer", "primer_ez"],
                      help="the baseline, then the model")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--rsqrt_record", default=None,
                      help="the constant-rate study's scaling.json, to set beside")
  parser.add_argument("--out", required=True, help="writes OUT.json and OUT.png")
  args = parser.parse_args(argv)
  baseline, model = args.models
  losses = read_decay_runs(args.root, args.corpus, args.width, args.budgets,
                           args.models, args.seed)
  done = [i for i, b in enumerate(args.budgets)
          if losses[baseline][i] is not None and losses[model][i] is not None]
  if len(done) < 2:
    sys.exit(f"decay_check: {len(done)} budget(s) have both runs evaluated under "
             f"{args.root}; at least 2 are needed: run benchmarks/scaling.py "
             "--schedule decay for each budget first")
  budgets = [args.budgets[i] for i in done]
  final = {m: [losses[m][i] for i in done] for m in args.models}
  decay = budget_speedups(budgets, final[baseline], final[model])
  rsqrt = rsqrt_speedups(args.rsqrt_record, args.width, model, budgets)
  record = {
      "command": "PYTHONPATH=. .venv/bin/python benchmarks/decay_check.py " +
                 " ".join(argv if argv is not None else sys.argv[1:]),
      "corpus": args.corpus, "d_model": args.width, "seed": args.seed,
      "schedule": "gin/schedules/decay_to_budget.gin: rsqrt times a linear decay "
                  "to 0 at the budget, one run a budget",
      "tokens_per_step": TOKENS_PER_STEP, "models": args.models,
      "method": "speedup at B = the baseline budget whose final loss equals the "
                "model's final loss at B, interpolated linearly in log(budget), "
                "over B; null outside the baseline's budgets",
      "budgets": [{"budget_steps": b,
                   "final_loss": {m: final[m][k] for m in args.models},
                   "speedup_decay": decay[b], "speedup_rsqrt_by_budget": rsqrt.get(b)}
                  for k, b in enumerate(budgets)]}
  files.write_json(args.out + ".json", record)
  plot(budgets, final, decay, rsqrt, args.out + ".png",
       f"{model} over {baseline}, d_model {args.width}, {args.corpus}, seed "
       f"{args.seed}: learning rate decayed to each budget")
  for b in budgets:
    d, r = decay[b], rsqrt.get(b)
    print(f"[decay_check] {b} steps: decay to the budget "
          + (f"{d:.2f}x" if d is not None else "outside the baseline's budgets")
          + (f", constant rate {r:.2f}x" if r is not None else ""))
  return record


if __name__ == "__main__":
  main()
