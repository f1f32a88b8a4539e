"""The paper's speedup measure over evaluated runs (So et al., 2021, section 4).

The baseline (the first run, or with grouping the first run's model) reaches a
final validation loss (the mean over its seeds) with its whole training budget;
every run's speedup is that budget divided by the compute the run spent to reach
the same loss. Compute is
counted three ways: training FLOPs (the planner's count per step, from the run's
own gin configuration), steps, and wall-clock seconds (from the training
progress log). Between two evaluated checkpoints the compute at the target loss
is interpolated linearly in log(compute), as on the paper's log-scale plots.
"""

import dataclasses
import json
import math
import os
import statistics

import tensorflow.compat.v1 as tf

from primer_mtf import files
from primer_mtf.commands import kinds
from primer_mtf.commands import runs
from primer_mtf.errors import UsageError
from primer_mtf.training import progress

AXES = ("flops", "steps", "seconds")
SUMMARY = "compare.json"
PLOT = "compare.png"
# The curve's shape (see :func:`shape`).
TREND_BUDGETS = 3        # the last budgets the trend and the settled test read
SETTLED_FLOOR = 0.05     # the settled test's tolerance with one seed, and its least
CLOSING_MARGIN = 0.1     # a final speedup this far below the peak: the lead closes
SETTLED_RULE = (f"past the transient (settled): the mean FLOPs speedups at the last "
                f"{TREND_BUDGETS} budgets lie within a tolerance of each other: the "
                f"widest range over seeds at those budgets, and at least "
                f"{SETTLED_FLOOR}")


@dataclasses.dataclass
class Curve:
  """A run's validation loss after ``steps`` and what reaching each step cost."""
  name: str
  group: str
  steps: list
  losses: list
  flops_per_step: float
  seconds: list = None   # wall-clock seconds of training at each step, or None
  label: str = None      # for plots: the model and size (and the folder), not
                         # the folder's name alone ("tiny" reads like a size)

  def compute(self, axis):
    if axis == "flops":
      return [s * self.flops_per_step for s in self.steps]
    if axis == "steps":
      return [float(s) for s in self.steps]
    return self.seconds


def compute_to_reach(compute, losses, target):
  """The compute at which a curve first gets down to ``target`` (None if never):
  interpolated linearly in log(compute) between the two evaluations around it
  (linearly from zero compute)."""
  if compute is None:
    return None
  for i, (c, loss) in enumerate(zip(compute, losses)):
    if loss > target:
      continue
    if i == 0:
      return c
    c0, l0 = compute[i - 1], losses[i - 1]
    f = (l0 - target) / (l0 - loss)
    if c0 <= 0:
      return c0 + f * (c - c0)
    return math.exp(math.log(c0) + f * (math.log(c) - math.log(c0)))
  return None


def _stats(values):
  values = [v for v in values if v is not None]
  if not values:
    return None
  return {"mean": statistics.fmean(values),
          "std": statistics.stdev(values) if len(values) > 1 else 0.0,
          "min": min(values), "max": max(values), "n": len(values)}


def speedups(curves):
  """The speedup of every curve and group over the baseline group (the first
  curve's group), in FLOPs, steps and seconds, as a JSON-ready dict."""
  baseline = [c for c in curves if c.group == curves[0].group]
  target = statistics.fmean(c.losses[-1] for c in baseline)
  # What the baseline spent to reach its final loss: its whole budget (the mean
  # over its seeds, whose final losses give the target).
  base_cost = {}
  for axis in AXES:
    budgets = [c.compute(axis)[-1] if c.compute(axis) else None for c in baseline]
    base_cost[axis] = None if None in budgets else statistics.fmean(budgets)
  rows = []
  for c in curves:
    row = {"run": c.name, "group": c.group, "final_loss": c.losses[-1],
           "final_step": c.steps[-1], "flops_per_step": c.flops_per_step,
           "to_target": {}, "speedup": {}}
    for axis in AXES:
      cost = compute_to_reach(c.compute(axis), c.losses, target)
      row["to_target"][axis] = cost
      row["speedup"][axis] = (base_cost[axis] / cost if cost and base_cost[axis]
                              else None)
    rows.append(row)
  groups = {}
  for g in dict.fromkeys(c.group for c in curves):
    members = [r for r in rows if r["group"] == g]
    groups[g] = {"runs": [r["run"] for r in members],
                 "reached": sum(r["to_target"]["steps"] is not None for r in members),
                 "speedup": {a: _stats([r["speedup"][a] for r in members])
                             for a in AXES}}
  by_budget = speedups_by_budget(curves)
  return {"baseline": curves[0].group, "target_loss": target, "runs": rows,
          "groups": groups, "by_budget": by_budget,
          "shape": {g: shape(e) for g, e in by_budget.items()},
          "settled_rule": SETTLED_RULE}


def speedups_by_budget(curves):
  """The speedup at every shorter training length too: for each step the
  baseline's runs were all evaluated at, the target is their mean loss there and
  the baseline's cost is that step; every other group's speedup (over its runs)
  is that cost over what each run spent to reach the target. How the speedup
  moves with the budget shows whether a lead grows or shrinks with training."""
  baseline = [c for c in curves if c.group == curves[0].group]
  budgets = sorted(set.intersection(*(set(c.steps) for c in baseline)) - {0})
  table = {g: [] for g in dict.fromkeys(c.group for c in curves)
           if g != curves[0].group}
  best = math.inf
  for step in budgets:
    target = statistics.fmean(c.losses[c.steps.index(step)] for c in baseline)
    # the baseline did better at an earlier budget: this one measures its
    # regression (a flat or overfitting curve), not the other run's lead
    regressed, best = target > best, min(best, target)
    base = {"flops": statistics.fmean(step * c.flops_per_step for c in baseline),
            "steps": float(step)}
    for group in table:
      members = [c for c in curves if c.group == group]
      entry = {"budget_steps": step, "target_loss": target,
               "baseline_regressed": regressed}
      for axis in ("flops", "steps"):
        costs = [compute_to_reach(c.compute(axis), c.losses, target)
                 for c in members]
        entry[axis] = _stats([base[axis] / cost if cost else None
                              for cost in costs])
      entry["reached"] = sum(cost is not None for cost in costs)
      entry["per_run"] = [base["flops"] / cost if cost else None
                          for cost in (compute_to_reach(c.compute("flops"), c.losses,
                                                        target) for c in members)]
      table[group].append(entry)
  return table


def shape(entries):
  """The shape of one group's by-budget speedup curve (FLOPs, mean over its
  runs): where it peaked, where it ended, and its trend over the last
  TREND_BUDGETS budgets (least-squares slope, speedup per 1,000 steps). The peak
  leaves out budgets where the baseline's loss was above its best so far. Settled
  (past the transient) when those last means lie within the seeds' widest range
  there, and at least SETTLED_FLOOR, of each other; their mean is a steadier
  figure than the final point when the curves flatten. None without a reached
  budget."""
  points = [(e["budget_steps"], e["flops"]) for e in entries if e["flops"]]
  if not points:
    return None
  regressed = [e["budget_steps"] for e in entries
               if e["flops"] and e.get("baseline_regressed")]
  peak_step, peak = max([p for p in points if p[0] not in regressed] or points,
                        key=lambda p: p[1]["mean"])
  final_step, final = points[-1]
  last = points[-TREND_BUDGETS:]
  steps = [p[0] for p in last]
  means = [p[1]["mean"] for p in last]
  slope = None
  if len(last) > 1:
    mean_step, mean_value = statistics.fmean(steps), statistics.fmean(means)
    slope = 1000 * (sum((x - mean_step) * (y - mean_value)
                        for x, y in zip(steps, means))
                    / sum((x - mean_step) ** 2 for x in steps))
  tolerance = max([p[1]["max"] - p[1]["min"] for p in last] + [SETTLED_FLOOR])
  return {"peak": peak["mean"], "peak_step": peak_step,
          "final": final["mean"], "final_step": final_step,
          "final_range": [final["min"], final["max"]],
          "last_steps": steps, "last_means": means,
          "last_mean": statistics.fmean(means),   # steadier than one final point
          "slope_per_1000_steps": slope,
          "settled": len(last) == TREND_BUDGETS and max(means) - min(means) <= tolerance,
          "settled_tolerance": tolerance,
          "closing": peak["mean"] - final["mean"] >= CLOSING_MARGIN,
          "baseline_regressed_steps": regressed}


def wall_clock(log_rows, tokens_per_step):
  """[(step, training seconds up to it)] from the progress log: each report's
  interval is its steps over its own measured rate, so the time a run spent
  stopped between a crash and its resumption is not counted."""
  points, total, last_step = [(0, 0.0)], 0.0, 0
  for r in sorted(log_rows, key=lambda r: (r["time"], r["step"])):
    steps = r["step"] - last_step
    if steps > 0 and r["tokens_per_sec"] > 0:
      total += steps * tokens_per_step / r["tokens_per_sec"]
      points.append((r["step"], total))
    last_step = r["step"]
  return points


def _interpolate(points, step):
  for (s0, t0), (s1, t1) in zip(points, points[1:]):
    if s0 <= step <= s1:
      return t0 + (t1 - t0) * (step - s0) / max(s1 - s0, 1)
  return None


_plans = {}


def _plan(record, rows):
  """The planner's count for a run (cached: runs of one model share it)."""
  from primer_mtf.planning import planner  # pylint: disable=g-import-not-at-top
  key = json.dumps([record["model"], record["size"], record["gin_file"],
                    record["gin_param"], rows])
  if key not in _plans:
    _plans[key] = planner.plan(record["model"], record["size"], "cpu", rows,
                               record["gin_param"], record["gin_file"])
  return _plans[key]


def read_run(model_dir, split="validation"):
  """(record, eval table, embedding rows) of an evaluated run; one line if not."""
  run = kinds.open_run(model_dir)
  record = run.compare_curve()
  table_path = os.path.join(model_dir, f"eval_{split}.json")
  if not tf.io.gfile.exists(table_path):
    raise UsageError(f"{model_dir} has no {split} evaluation; run "
                     f"`primer-mtf eval --model_dir {model_dir}` first")
  with tf.io.gfile.GFile(table_path) as f:
    try:
      table = json.load(f)
    except ValueError:
      table = None
  if not isinstance(table, list) or not all(
      isinstance(r, dict) and "step" in r and "loss" in r for r in table):
    # a copy stopped half way; eval writes it from its events, so it repairs it
    raise UsageError(f"{table_path} is damaged (cut short or not eval results); "
                     f"run `primer-mtf eval --model_dir {model_dir} --split {split}` "
                     "to write it again from the run's eval events")
  if len(table) < 2:
    raise UsageError(f"{model_dir} has {len(table)} evaluated checkpoint; compare "
                     "needs a curve (evaluate at least two checkpoints)")
  return record, table, run.embedding_rows()


def identity(record, table, rows):
  """What two runs must share to be compared: vocabulary and validation data."""
  return {"vocabulary": (record.get("vocabulary"), rows),
          "validation data": (record["corpus"], record.get("tfds_data_dir"),
                              record.get("objective", "packed_lm"),
                              table[-1].get("num_eval_tokens"))}


def curve(model_dir, record, table, rows, group_by_model=False):
  """The Curve of a run read by :func:`read_run`."""
  name = os.path.basename(os.path.normpath(model_dir))
  plan = _plan(record, rows)
  chosen = f"{record['model']} {record.get('size') or ''}".strip()
  result = Curve(name=name, group=record["model"] if group_by_model else name,
                 steps=[r["step"] for r in table], losses=[r["loss"] for r in table],
                 flops_per_step=plan["flops_per_step"],
                 label=chosen if group_by_model or chosen == name
                 else f"{chosen} ({name})")
  log_path = os.path.join(model_dir, progress.TRAIN_LOG)
  if tf.io.gfile.exists(log_path):
    log_rows = files.read_json_lines(log_path)
    points = wall_clock(log_rows, plan["batch_sequences"] * plan["sequence_length"])
    seconds = [_interpolate(points, s) for s in result.steps]
    result.seconds = None if None in seconds else seconds
  return result


def check_comparable(names, identities):
  """One line where two runs differ in vocabulary or validation data."""
  first = identities[0]
  for name, identity in zip(names[1:], identities[1:]):
    for what in first:
      if identity[what] != first[what]:
        raise UsageError(f"{names[0]} and {name} differ in {what} "
                         f"({first[what]} vs {identity[what]}); compare runs "
                         f"evaluated on the same {what}")


def plot(curves, summary, path):
  """Validation loss against training FLOPs, one curve per run, the target loss
  and where each run reaches it."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (ax, by_budget) = plt.subplots(1, 2, figsize=(14, 5),
                                      gridspec_kw={"width_ratios": [3, 2]})
  colors = {g: f"C{i}" for i, g in enumerate(summary["groups"])}
  names = {}
  for c in curves:
    names.setdefault(c.group, c.label or c.group)
  plot_by_budget(by_budget, summary, colors, names)
  target = summary["target_loss"]
  labelled = set()
  for curve, row in zip(curves, summary["runs"]):
    flops = curve.compute("flops")
    keep = [i for i, f in enumerate(flops) if f > 0]
    stats = summary["groups"][curve.group]["speedup"]["flops"]
    label = None
    if curve.group not in labelled:
      labelled.add(curve.group)
      if curve.group == summary["baseline"]:
        label = f"{names[curve.group]} (baseline)"
      elif stats:
        spread = f" ± {stats['std']:.2f}" if stats["n"] > 1 else ""
        label = f"{names[curve.group]} ({stats['mean']:.2f}x{spread})"
      else:
        label = f"{names[curve.group]} (never reached)"
    ax.plot([flops[i] for i in keep], [curve.losses[i] for i in keep], "o-",
            color=colors[curve.group], alpha=0.8, markersize=3, label=label)
    reached = row["to_target"]["flops"]
    if reached:
      ax.plot([reached], [target], "*", color=colors[curve.group], markersize=12)
  ax.axhline(target, color="gray", linestyle="--", linewidth=1,
             label=f"baseline's final loss {target:.3f}")
  ax.set_xscale("log")
  ax.set_xlabel("training FLOPs")
  ax.set_ylabel("validation loss (nats/token)")
  baseline = names.get(summary["baseline"], summary["baseline"])
  ax.set_title(f"speedup in training FLOPs over the baseline, {baseline}, to reach "
               "its final loss", fontsize=10)
  ax.grid(alpha=0.3, which="both")
  ax.legend()
  files.save_figure(fig, path)
  plt.close(fig)


def plot_by_budget(ax, summary, colors, names=None):
  """Each group's speedup in FLOPs against the training length the baseline's
  loss was taken at: every run (thin) and the mean over them (thick). ``names``:
  {group: its label in the legend}."""
  names = names or {}
  for group, entries in summary.get("by_budget", {}).items():
    points = [e for e in entries if e["flops"]]
    if not points:
      continue
    steps = [e["budget_steps"] for e in points]
    runs = max(len(e.get("per_run") or []) for e in points)
    if runs > 1:
      for k in range(runs):
        run = [(e["budget_steps"], e["per_run"][k]) for e in points
               if e.get("per_run") and e["per_run"][k]]
        ax.plot([p[0] for p in run], [p[1] for p in run], "-", linewidth=0.8,
                color=colors[group], alpha=0.4)
    ax.plot(steps, [e["flops"]["mean"] for e in points], "o-", color=colors[group],
            markersize=3, linewidth=2,
            label=names.get(group, group) + (f" (mean; {runs} runs thin)"
                                             if runs > 1 else ""))
    s = summary.get("shape", {}).get(group)
    if s:
      ax.annotate(f"peak {s['peak']:.2f}x", (s["peak_step"], s["peak"]),
                  textcoords="offset points", xytext=(0, 6), fontsize=7,
                  color=colors[group], ha="center")
  ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
  ax.set_xlabel("training steps of the baseline "
                f"({names.get(summary['baseline'], summary['baseline'])})")
  ax.set_ylabel("speedup in FLOPs to the baseline's loss there")
  ax.set_title("speedup at every shorter budget")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)


def compare(model_dirs, output=".", group_by_model=False, split="validation",
            extra=None):
  """Reads the runs, checks they are comparable, writes compare.json and
  compare.png into ``output``; returns the summary and the two paths."""
  if len(model_dirs) < 2:
    raise UsageError("compare needs a baseline run and at least one other run")
  names = [os.path.basename(os.path.normpath(d)) for d in model_dirs]
  if len(set(names)) < len(names):
    raise UsageError("two runs have the same folder name; give each run its own name")
  # each run's kind first: a run compare cannot count is refused before any other
  models = {kinds.open_run(d).compare_curve()["model"] for d in model_dirs}
  if group_by_model and len(models) == 1:
    raise UsageError(f"--group groups runs by model, and every run is "
                     f"{models.pop()}: one group, nothing to compare it with; "
                     "compare them without --group, or add runs of another model")
  read = [read_run(d, split) for d in model_dirs]
  check_comparable(names, [identity(*r) for r in read])
  curves = [curve(d, *r, group_by_model=group_by_model)
            for d, r in zip(model_dirs, read)]
  summary = speedups(curves)
  summary["split"] = split
  summary["run_dirs"] = list(model_dirs)
  summary.update(extra or {})
  tf.io.gfile.makedirs(output)
  json_path = os.path.join(output, SUMMARY)
  png_path = os.path.join(output, PLOT)
  plot(curves, summary, png_path)
  files.write_json(json_path, summary)
  return summary, json_path, png_path


def format_summary(summary):
  """Lines for the terminal: the target, then each group's speedups."""
  lines = [f"[compare] baseline {summary['baseline']}: final {summary['split']} loss "
           f"{summary['target_loss']:.4f}"]
  for group, g in summary["groups"].items():
    parts = []
    for axis, label in (("flops", "FLOPs"), ("steps", "steps"),
                        ("seconds", "wall-clock")):
      s = g["speedup"][axis]
      if s is None:
        parts.append(f"{label} never reached" if axis != "seconds" or g["reached"]
                     == 0 else f"{label} n/a")
      elif s["n"] > 1:
        parts.append(f"{label} {s['mean']:.2f}x ± {s['std']:.2f} "
                     f"({s['min']:.2f}-{s['max']:.2f}, n={s['n']})")
      else:
        parts.append(f"{label} {s['mean']:.2f}x")
    reached = f"{g['reached']}/{len(g['runs'])} runs reach it"
    lines.append(f"[compare] {group}: {', '.join(parts)}; {reached}")
    lines += shape_lines(group, summary.get("shape", {}).get(group))
  return lines


def shape_lines(group, s):
  """The by-budget curve's shape in words: peak, final, trend, and whether the
  lead is closing."""
  if not s:
    return []
  trend = (f"{s['slope_per_1000_steps']:+.2f} per 1,000 steps over steps "
           f"{', '.join(str(x) for x in s['last_steps'])}"
           if s["slope_per_1000_steps"] is not None else "one budget")
  lines = [f"[compare] {group} by budget: peak {s['peak']:.2f}x at {s['peak_step']} "
           f"steps, final {s['final']:.2f}x at {s['final_step']} (last "
           f"{len(s['last_steps'])} budgets' mean {s['last_mean']:.2f}x); trend {trend}; "
           + ("settled" if s["settled"] else "not settled")
           + f" (last {len(s['last_steps'])} within {s['settled_tolerance']:.2f})"]
  if s.get("baseline_regressed_steps"):
    lines.append(f"[compare] {group}: the baseline's loss rose above its best so far "
                 f"at steps {', '.join(map(str, s['baseline_regressed_steps']))}; "
                 "those budgets measure that, not a lead, and no peak is taken there")
  if s["closing"]:
    lines.append(f"[compare] {group}: the lead is closing: {s['peak']:.2f}x at "
                 f"{s['peak_step']} steps, {s['final']:.2f}x at {s['final_step']}")
  return lines


def train_and_compare(models, seeds, output, size="tiny", mesh="cpu", corpus="kjv",
                      train_steps=None, evaluations=10, gin_params=(), objective=None,
                      jobs=1, vary="both"):
  """Trains each model with each seed on the same data and budget, evaluates
  every run and compares them (grouped by model when seeds > 1).

  Seed k is the same for every model; ``vary`` says what it changes: ``data``
  the training data order (``mesh_train_dataset_fn.seed``), ``init`` the initial
  weights (``train --seed``, with the data order of seed 0), ``both`` the two.
  Runs live in ``output/runs/MODEL_seedK``; a rerun resumes them and evaluates
  only checkpoints not evaluated yet, so it costs nothing once done.
  With ``jobs`` > 1 a seed's models train, then evaluate, that many at a time,
  so a seed's pair is done together (a long study reads its seeds as they finish).
  """
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from primer_mtf import configs  # pylint: disable=g-import-not-at-top
  if len(models) < 2:
    raise UsageError("compare --train needs at least two --models, the baseline first")
  for model in models:
    configs.resolve("models", model)
  with configs.preserved():
    configs.parse(models[0], size, mesh, gin_params=gin_params)
    steps = train_steps or configs.query("utils.run.train_steps")
  if not steps:
    raise UsageError(f"size {size!r} sets no train steps; give --train_steps")
  every = max(steps // evaluations, 1)
  model_dirs, total = [], seeds * len(models)
  command = [sys.executable, "-m", "primer_mtf"]

  def failed(args, model_dir):
    return UsageError(f"`primer-mtf {args[0]}` of {model_dir} failed (its error "
                      "is above); fix it and rerun: finished runs are kept")

  for seed in range(seeds):
    pending = []
    for model in models:
      model_dir = os.path.join(output, "runs", f"{model}_seed{seed}")
      model_dirs.append(model_dir)
      print(f"[compare] {len(model_dirs)}/{total}: {model}, seed {seed} -> {model_dir}",
            file=sys.stderr, flush=True)
      train = ["train", "--model_dir", model_dir, "--model", model, "--size", size,
               "--mesh", mesh, "--corpus", corpus, "--train_steps", str(steps),
               *seed_flags(vary, seed),
               "--gin_param", f"utils.run.save_checkpoints_steps = {every}"]
      if objective:
        train += ["--objective", objective]
      for p in gin_params:
        train += ["--gin_param", p]
      pending.append((model_dir, train))
    if jobs > 1:   # a seed's models side by side, then their evaluations
      for start in range(0, len(pending), jobs):
        batch = pending[start:start + jobs]
        for stage in (batch, [(d, ["eval", "--model_dir", d]) for d, _ in batch]):
          processes = [subprocess.Popen(command + args) for _, args in stage]
          codes = [process.wait() for process in processes]   # all end first
          for (model_dir, args), code in zip(stage, codes):
            if code:
              raise failed(args, model_dir)
      continue
    for model_dir, train in pending:
      for args in (train, ["eval", "--model_dir", model_dir]):
        if subprocess.run(command + args, check=False).returncode:
          raise failed(args, model_dir)
  print(f"[compare] the {seeds} seeds vary {VARIED[vary]}", file=sys.stderr)
  return compare(model_dirs, output, group_by_model=seeds > 1,
                 extra={"seeds_vary": VARIED[vary]})


VARIED = {"data": "the training data order only", "init": "the initial weights only",
          "both": "the training data order and the initial weights"}


def seed_flags(vary, seed):
  """``train`` flags for seed ``seed`` of a comparison that varies ``vary``."""
  if vary not in VARIED:
    raise UsageError(f"--vary is one of {', '.join(VARIED)}, not {vary!r}")
  base = runs.DEFAULT_SEED
  init = base + seed if vary in ("init", "both") else base
  data = base + seed if vary in ("data", "both") else base
  return ["--seed", str(init), "--gin_param", f"mesh_train_dataset_fn.seed = {data}"]
