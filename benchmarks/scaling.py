"""How Primer-EZ's speedup over vanilla T5 changes with model size and training length.

For each corpus and width, ``primer-mtf compare --train`` trains the vanilla
transformer and Primer-EZ side by side (same data, same order per seed, same
tokens and steps; tiny's 2 layers, 16 x 128 tokens a step, --train_steps steps,
--evaluations checkpoints), evaluates them and reports the paper's speedup at the
final budget and at every shorter one. This script puts the final speedups against
the model's training FLOPs a token, beside the paper's points, and every seed's
by-budget curve at every width on one panel. Each corpus's runs, ``scaling.json``
and ``scaling.png`` go into --out/CORPUS.

The study past the early transient (README, "Comparing runs"):

    PYTHONPATH=. .venv/bin/python benchmarks/scaling.py --corpus kjv pydocs \\
        --widths 64:3 128:3 256:3 --train_steps 2000 --evaluations 20 --out bench/transient

Past the transient: a model's by-budget mean speedup has stopped moving when its
last three budgets lie within TOLERANCE of each other, where the tolerance is the
widest range over seeds at those budgets, and at least 0.05 (compare.shape, which
the record quotes). --summarise_only writes the records from whatever runs are
evaluated so far (seeds still training are left out, and the record says so).

--archive DIR keeps what a record is computed from, each finished run's record and
evaluated curve (``primer_mtf_run.json``, ``eval_validation.json``; no weights),
in DIR/CORPUS/dW/runs, so the study's records can be written again, and added to,
after the machine that trained it is gone. The committed study is such a folder:

    PYTHONPATH=. .venv/bin/python benchmarks/scaling.py --corpus kjv pydocs \\
        --widths 32:3 64:3 128:3 --train_steps 2000 --summarise_only --carry 128 \\
        --out benchmarks/results/scaling_2000_steps

--carry W keeps width W's row from the record already in --out when its runs are
not there (the record marks it carried).

--schedule decay trains under gin/schedules/decay_to_budget.gin: the learning rate
falls linearly to 0 at the last step, so a budget is one run (give each budget its
own --out and --train_steps), as scaling-law studies measure. The default, rsqrt,
is the paper's 1/sqrt(max(step, 10^4)): constant through every CPU-sized run.

The 300-step figures of the README (an early-training measure):

    PYTHONPATH=. .venv/bin/python benchmarks/scaling.py --widths 128:3 256:2 384:1 512:1 \\
        --reuse 128=bench/compare_tiny_six --out bench/scaling

Width W has d_model W, heads of 64 (at least 4 heads: 4 x 16 at 64; 4 x 32 at
128, which is ``tiny`` exactly), d_ff 4W. ``--reuse W=DIR`` takes the runs of an earlier
``compare --train`` of the same configuration (its ``runs`` folder is linked, and
compare resumes finished runs at no cost).
"""

import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)   # this checkout's primer_mtf, here and in the runs
os.environ["PYTHONPATH"] = os.pathsep.join(
    [REPO] + [p for p in [os.environ.get("PYTHONPATH")] if p])
from primer_mtf import files  # pylint: disable=g-import-not-at-top,wrong-import-position

TOKENS_PER_STEP = 16 * 128
SCHEDULES = {"rsqrt": [],
             "decay": ["include 'schedules/decay_to_budget.gin'"]}

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


def run_width(width, seeds, models, folder, reuse=None, train_steps=None,
              corpus="kjv", evaluations=10, schedule="rsqrt", jobs=1):
  """Trains (or resumes) and compares one width's runs; its compare summary."""
  from primer_mtf.commands import compare  # pylint: disable=g-import-not-at-top
  os.makedirs(folder, exist_ok=True)
  if reuse and not os.path.exists(os.path.join(folder, "runs")):
    os.symlink(os.path.abspath(os.path.join(reuse, "runs")),
               os.path.join(folder, "runs"))
  params = width_params(width) + SCHEDULES[schedule]
  print(f"[scaling] {corpus} d_model {width}: compare --train --models "
        f"{' '.join(models)} --seeds {seeds} --corpus {corpus} --train_steps "
        f"{train_steps} --evaluations {evaluations} --output {folder} "
        + " ".join(f"--gin_param {p!r}" for p in params), file=sys.stderr, flush=True)
  summary, _, _ = compare.train_and_compare(
      models, seeds, folder, corpus=corpus, train_steps=train_steps,
      evaluations=evaluations, gin_params=params, jobs=jobs)
  for line in compare.format_summary(summary):
    print(line, flush=True)
  return summary


def finished_runs(folder, models, train_steps):
  """The seeds whose every model was evaluated at ``train_steps``, and their run
  folders (baseline first), for a record of a study still training."""
  seeds, dirs = [], []
  for seed in range(100):
    names = [os.path.join(folder, "runs", f"{m}_seed{seed}") for m in models]
    if not os.path.isdir(names[0]):
      break
    done = True
    for name in names:
      table = os.path.join(name, "eval_validation.json")
      if not os.path.exists(table):
        done = False
        break
      with open(table) as f:
        rows = json.load(f)
      done = done and bool(rows) and rows[-1]["step"] >= train_steps
    if done:
      seeds.append(seed)
      dirs += names
  return seeds, dirs


CURVE_FILES = ("primer_mtf_run.json", "eval_validation.json")


def archive_runs(folder, archive, models, train_steps):
  """Copies the record and evaluated curve of every finished run in
  ``folder/runs`` into ``archive/runs``: enough for compare, without weights."""
  _, dirs = finished_runs(folder, models, train_steps)
  for run_dir in dirs:
    for name in CURVE_FILES:
      with open(os.path.join(run_dir, name)) as f:
        text = f.read()
      with files.replaced(os.path.join(archive, "runs", os.path.basename(run_dir),
                                       name)) as f:
        f.write(text)
  return dirs


def carried_row(out, width):
  """Width ``width``'s row of the record already at ``out/scaling.json``, marked
  carried (its runs are not on disk); None if that record has no whole row."""
  path = os.path.join(out, "scaling.json")
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    earlier = json.load(f)
  open_widths = {p["d_model"] for p in earlier.get("partial") or []}
  for row in earlier["widths"]:
    if row["d_model"] == width and width not in open_widths:
      row.setdefault("carried", "runs not on disk: the row of the earlier record "
                     f"({earlier['command']})")
      return row
  return None


def compare_finished(width, folder, models, train_steps):
  """compare over the finished seeds of one width (None if none has finished)."""
  seeds, dirs = finished_runs(folder, models, train_steps)
  if not seeds:
    print(f"[scaling] {folder}: no seed finished yet", file=sys.stderr)
    return None, []
  from primer_mtf.commands import compare  # pylint: disable=g-import-not-at-top
  print(f"[scaling] d_model {width}: compare {' '.join(dirs)} --output {folder}"
        + (" --group" if len(seeds) > 1 else ""), file=sys.stderr, flush=True)
  summary, _, _ = compare.compare(dirs, folder, group_by_model=len(seeds) > 1)
  for line in compare.format_summary(summary):
    print(line, flush=True)
  return summary, seeds


def summarise(width, seeds, summary):
  """One width's row of the record: the final and by-budget speedups (with every
  seed's curve) and the curve's shape (peak, final, trend, past the transient)."""
  baseline = [r for r in summary["runs"] if r["group"] == summary["baseline"]]
  flops_per_step = baseline[0]["flops_per_step"]
  row = {"d_model": width, "seeds": seeds, "gin_param": width_params(width),
         "flops_per_step": flops_per_step,
         "flops_per_token": flops_per_step / TOKENS_PER_STEP,
         "final_step": baseline[0]["final_step"],
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
                       "steps": e["steps"], "per_run": e.get("per_run")}
                      for e in summary["by_budget"][group]],
        "shape": summary.get("shape", {}).get(group)}
  return row


def plot(rows, path, steps_label="300 steps"):
  """Left: the final speedup against FLOPs a token, beside the paper's points.
  Right: the by-budget speedup, every seed (thin) and the mean (thick) of every
  width, on one panel."""
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
                label=f"{m}, here ({steps_label}, range over seeds)")
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
  plot_by_budget(ax2, rows, models)
  files.save_figure(fig, path)
  plt.close(fig)


def plot_by_budget(ax, rows, models, widths=None):
  """Every seed's by-budget curve (thin) and each width's mean (thick): one colour
  a width (the same in every panel drawn with the same ``widths``), one marker a
  model."""
  markers = ["o", "s", "^", "d"]
  widths = sorted(widths or {r["d_model"] for r in rows})
  for r in rows:
    color = f"C{widths.index(r['d_model'])}"
    for j, m in enumerate(models):
      entries = [e for e in r["models"].get(m, {}).get("by_budget", []) if e["flops"]]
      if not entries:
        continue
      tokens = [e["budget_steps"] * TOKENS_PER_STEP for e in entries]
      runs = max(len(e.get("per_run") or []) for e in entries)
      for k in range(runs):
        seed = [(t, e["per_run"][k]) for t, e in zip(tokens, entries)
                if e.get("per_run") and k < len(e["per_run"]) and e["per_run"][k]]
        ax.plot([p[0] for p in seed], [p[1] for p in seed], "-", color=color,
                linewidth=0.8, alpha=0.35)
      n = len(r["seeds"]) if isinstance(r["seeds"], list) else r["seeds"]
      ax.plot(tokens, [e["flops"]["mean"] for e in entries], markers[j % 4] + "-",
              color=color, markersize=3, linewidth=2,
              label=f"{m}, d_model {r['d_model']} (" + (
                  f"{n} seeds: mean, each seed thin)" if n > 1 else "1 seed)"))
  ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
  ax.set_xlabel("training tokens of vanilla T5 (its loss there is the target)")
  ax.set_ylabel("speedup in training FLOPs")
  ax.set_title("speedup against training length, every seed and width")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)


def plot_corpora(rows_by_corpus, path, steps_label):
  """Every corpus's by-budget panel side by side, on one shared speedup axis: every
  curve of the study in one figure."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(rows_by_corpus), sharey=True,
                           figsize=(7 * len(rows_by_corpus), 5), squeeze=False)
  widths = {r["d_model"] for rows in rows_by_corpus.values() for r in rows}
  for ax, (corpus, rows) in zip(axes[0], rows_by_corpus.items()):
    plot_by_budget(ax, rows, list(dict.fromkeys(m for r in rows for m in r["models"])),
                   widths)
    ax.set_title(f"{corpus}, {steps_label}: every seed and width")
  files.save_figure(fig, path)
  plt.close(fig)


def record(corpus, rows, args, argv, partial):
  """The JSON record of one corpus: the setting, the criterion, every width."""
  from primer_mtf.commands import compare  # pylint: disable=g-import-not-at-top
  budgets = sorted({e["budget_steps"] for r in rows for v in r["models"].values()
                    for e in v["by_budget"]})
  return {"command": "benchmarks/scaling.py " + " ".join(argv),
          "corpus": corpus, "train_steps": args.train_steps,
          "budgets_steps": budgets, "schedule": args.schedule,
          "schedule_gin_param": SCHEDULES[args.schedule],
          "tokens_per_step": TOKENS_PER_STEP,
          "past_transient_criterion": compare.SETTLED_RULE,
          "partial": partial, "paper": PAPER, "widths": rows}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--widths", nargs="+",
                      default=["128:3", "256:2", "384:1", "512:1"],
                      help="d_model:seeds for each width")
  parser.add_argument("--models", nargs="+", default=["transformer", "primer_ez"],
                      help="the baseline first")
  parser.add_argument("--corpus", nargs="+", default=["kjv"],
                      help="each corpus gets its own folder and record")
  parser.add_argument("--reuse", nargs="*", default=[],
                      help="W=DIR: the runs of an earlier compare --train at width W")
  parser.add_argument("--train_steps", type=int, default=None,
                      help="the budget (default: the size's, 300)")
  parser.add_argument("--evaluations", type=int, default=10,
                      help="checkpoints evaluated a run: the by-budget points")
  parser.add_argument("--schedule", choices=sorted(SCHEDULES), default="rsqrt")
  parser.add_argument("--jobs", type=int, default=1,
                      help="a seed's models trained this many at a time")
  parser.add_argument("--summarise_only", action="store_true",
                      help="train nothing: record the seeds finished so far")
  parser.add_argument("--carry", type=int, nargs="*", default=[],
                      help="with --summarise_only: widths whose rows are kept from "
                      "the record already in --out when their runs are not there")
  parser.add_argument("--archive", default=None,
                      help="copy each finished run's record and curve into "
                      "ARCHIVE/CORPUS/dW/runs (no weights)")
  parser.add_argument("--out", default="bench/scaling")
  args = parser.parse_args(argv)
  if args.carry and not args.summarise_only:
    parser.error("--carry keeps rows of a record: give it with --summarise_only")
  argv = sys.argv[1:] if argv is None else argv
  reuse = dict(r.split("=", 1) for r in args.reuse)
  rows_by_corpus = {}
  for corpus in args.corpus:
    out = os.path.join(args.out, corpus)
    rows, partial = [], []
    for spec in args.widths:
      width, seeds = (int(v) for v in spec.split(":"))
      folder = os.path.join(out, f"d{width}")
      if args.summarise_only:
        summary, done = compare_finished(width, folder, args.models,
                                         args.train_steps or 300)
        carried = (carried_row(out, width)
                   if summary is None and width in args.carry else None)
        if carried:
          rows.append(carried)
          continue
        if summary is None:
          partial.append({"d_model": width, "seeds_finished": []})
          continue
        if len(done) < seeds:
          partial.append({"d_model": width, "seeds_finished": done,
                          "seeds_planned": seeds})
        rows.append(summarise(width, done, summary))
      else:
        summary = run_width(width, seeds, args.models, folder,
                            reuse.get(str(width)), args.train_steps, corpus,
                            args.evaluations, args.schedule, args.jobs)
        rows.append(summarise(width, list(range(seeds)), summary))
      if args.archive:
        archive_runs(folder, os.path.join(args.archive, corpus, f"d{width}"),
                     args.models, args.train_steps or 300)
    os.makedirs(out, exist_ok=True)
    files.write_json(os.path.join(out, "scaling.json"),
                     record(corpus, rows, args, argv, partial or None))
    if rows:
      rows_by_corpus[corpus] = rows
      plot(rows, os.path.join(out, "scaling.png"),
           f"{args.train_steps or 300} steps, {corpus}")
    for r in rows:
      for m, v in r["models"].items():
        s = v["final_speedup"]["flops"]
        shape = v.get("shape") or {}
        print(f"[scaling] {corpus} d_model {r['d_model']} ({r['flops_per_token']:.3g} "
              f"FLOPs a token, {r['final_step']} steps): {m} " +
              (f"{s['mean']:.2f}x ({s['min']:.2f}-{s['max']:.2f}, n={s['n']})"
               if s else "never reached") +
              (f"; peak {shape['peak']:.2f}x at {shape['peak_step']} steps, last "
               f"{len(shape['last_steps'])} budgets' mean {shape['last_mean']:.2f}x, "
               f"past the transient: {shape['settled']}" if shape else ""))
  if len(rows_by_corpus) > 1:
    plot_corpora(rows_by_corpus, os.path.join(args.out, "scaling_by_budget.png"),
                 f"{args.train_steps or 300} steps")


if __name__ == "__main__":
  main()
