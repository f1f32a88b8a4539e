"""The paper's speedup measure: synthetic curves with known answers, the run
files it reads, and its refusals."""
import json
import math
import os

import pytest

import primer_mtf  # pylint: disable=unused-import
from primer_mtf import cli
from primer_mtf.commands import compare
from primer_mtf.commands import runs

from conftest import run_cli


def _power_law(c):
  """Validation loss after c FLOPs: L = 2 + 40 c^-0.25 (10 at zero compute)."""
  return 10.0 if c <= 0 else min(10.0, 2.0 + 40.0 * c ** -0.25)


def _curve(name, factor, flops_per_step, steps=range(0, 1001, 10), group=None):
  """A run whose loss at compute c is the baseline's at factor x c."""
  losses = [_power_law(factor * s * flops_per_step) for s in steps]
  return compare.Curve(name, group or name, list(steps), losses, flops_per_step)


def test_two_power_laws_offset_by_a_known_factor_give_that_factor():
  base = _curve("t5", 1.0, 1e9)
  other = _curve("primer", 2.5, 2e9)    # 2.5x less compute, 2x the FLOPs a step
  summary = compare.speedups([base, other])
  assert summary["target_loss"] == base.losses[-1]
  row = summary["runs"][1]
  assert row["speedup"]["flops"] == pytest.approx(2.5, rel=0.01)
  assert row["speedup"]["steps"] == pytest.approx(5.0, rel=0.01)
  assert summary["runs"][0]["speedup"]["flops"] == pytest.approx(1.0)


def test_log_space_interpolation_is_exact_for_a_log_linear_curve():
  compute = [0.0, 10.0, 100.0, 1000.0]
  losses = [9.0, 6.0, 4.0, 2.0]          # loss linear in log10(compute) above 10
  assert compare.compute_to_reach(compute, losses, 5.0) == pytest.approx(10 ** 1.5)
  assert compare.compute_to_reach(compute, losses, 7.5) == pytest.approx(5.0)
  assert compare.compute_to_reach(compute, losses, 1.9) is None


def test_a_run_that_never_gets_there_is_marked_not_averaged():
  base = _curve("t5", 1.0, 1e9)
  stalled = compare.Curve("stalled", "stalled", base.steps,
                          [max(loss, base.losses[-1] + 0.1) for loss in base.losses],
                          1e9)
  summary = compare.speedups([base, stalled])
  assert summary["runs"][1]["speedup"]["flops"] is None
  assert summary["groups"]["stalled"]["reached"] == 0
  assert summary["groups"]["stalled"]["speedup"]["flops"] is None
  summary["split"] = "validation"
  assert "FLOPs never reached" in compare.format_summary(summary)[-1]


def test_groups_report_mean_and_spread_over_seeds():
  curves = [_curve(f"t5_{i}", f, 1e9, group="t5") for i, f in enumerate((0.9, 1.0, 1.1))]
  curves += [_curve(f"ez_{i}", f, 1e9, group="ez") for i, f in enumerate((1.8, 2.0, 2.2))]
  summary = compare.speedups(curves)
  target = sum(c.losses[-1] for c in curves[:3]) / 3
  assert summary["target_loss"] == pytest.approx(target)
  ez = summary["groups"]["ez"]["speedup"]["steps"]
  runs_ez = [r["speedup"]["steps"] for r in summary["runs"][3:]]
  assert ez["n"] == 3 and ez["mean"] == pytest.approx(sum(runs_ez) / 3)
  assert ez["min"] < ez["mean"] < ez["max"] and ez["std"] > 0
  assert 1.7 < ez["mean"] < 2.3


def test_wall_clock_counts_each_report_at_its_own_rate():
  """Two sessions: the time between them (a crash, a queue) is not training."""
  log = [{"step": 1, "tokens_per_sec": 10.0, "time": 100.0},     # 1 step: 1 s
         {"step": 10, "tokens_per_sec": 90.0, "time": 101.0},    # 9 steps: 1 s
         {"step": 11, "tokens_per_sec": 5.0, "time": 5000.0},    # resumed: 2 s
         {"step": 20, "tokens_per_sec": 45.0, "time": 5002.0}]   # 9 steps: 2 s
  points = compare.wall_clock(log, tokens_per_step=10)
  assert points == [(0, 0.0), (1, 1.0), (10, 2.0), (11, 4.0), (20, 6.0)]


def _fake_run(root, name, model, losses, vocab_size=4096, every=100):
  """A run folder as train and eval leave it (no checkpoints needed)."""
  model_dir = root / name
  model_dir.mkdir()
  runs.PretrainingRun(
      str(model_dir), runs.make_record(model, "tiny", "cpu", "kjv", vocab_size)).write_record()
  table = [{"step": i * every, "loss": loss, "perplexity": math.exp(loss),
            "token_accuracy": 0.1, "num_eval_tokens": 2048.0}
           for i, loss in enumerate(losses)]
  (model_dir / "eval_validation.json").write_text(json.dumps(table))
  log = [{"step": s, "loss": 1.0, "tokens_per_sec": 2048.0, "time": float(s)}
         for s in range(10, every * (len(losses) - 1) + 1, 10)]
  (model_dir / "train_progress.jsonl").write_text(
      "".join(json.dumps(r) + "\n" for r in log))
  return str(model_dir)


@pytest.mark.graph
def test_compare_command_reads_runs_and_writes_json_and_png(tmp_path, capsys):
  base = _fake_run(tmp_path, "t5", "transformer", [8.3, 6.0, 5.0, 4.5])
  ez = _fake_run(tmp_path, "ez", "primer_ez", [8.3, 5.0, 4.5, 4.2])
  out = tmp_path / "out"
  assert cli.main(["compare", base, ez, "--output", str(out)]) == 0
  printed = capsys.readouterr().out
  summary = json.loads((out / "compare.json").read_text())
  assert (out / "compare.png").stat().st_size > 10000
  row = summary["runs"][1]
  assert row["to_target"]["steps"] == pytest.approx(200.0)   # reaches 4.5 at step 200
  assert row["speedup"]["steps"] == pytest.approx(1.5)
  # primer_ez costs a little more a step than the baseline (the taps' FLOPs)
  flops_ratio = row["to_target"]["flops"] / row["to_target"]["steps"] / (
      summary["runs"][0]["to_target"]["flops"] / summary["runs"][0]["to_target"]["steps"])
  assert 1.0 < flops_ratio < 1.05
  assert row["speedup"]["flops"] == pytest.approx(1.5 / flops_ratio)
  # 16 sequences x 128 tokens a step at 2,048 tokens/s: one second a step
  assert row["to_target"]["seconds"] == pytest.approx(200.0)
  assert f"[compare] ez: FLOPs {row['speedup']['flops']:.2f}x, steps 1.50x, " \
      "wall-clock 1.50x; 1/1 runs reach it" in printed


def test_runs_on_different_vocabularies_are_refused_with_nothing_written(tmp_path, capsys):
  base = _fake_run(tmp_path, "t5", "transformer", [8.3, 4.5])
  other = _fake_run(tmp_path, "ez", "primer_ez", [7.0, 4.0], vocab_size=2048)
  out = tmp_path / "out"
  assert cli.main(["compare", base, other, "--output", str(out)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "t5 and ez differ in vocabulary" in err[0], err
  assert not out.exists()


def test_an_unevaluated_run_is_refused(tmp_path, capsys):
  base = _fake_run(tmp_path, "t5", "transformer", [8.3, 4.5])
  bare = tmp_path / "bare"
  bare.mkdir()
  runs.PretrainingRun(
      str(bare), runs.make_record("primer_ez", "tiny", "cpu", "kjv", 4096)).write_record()
  assert cli.main(["compare", base, str(bare), "--output", str(tmp_path / "o")]) == 2
  assert "has no validation evaluation; run `primer-mtf eval" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.e2e
def test_compare_train_runs_the_models_side_by_side(tmp_path):
  out = tmp_path / "cmp"
  result = run_cli("compare", "--train", "--models", "transformer", "primer_ez",
                   "--train_steps", "20", "--evaluations", "2", "--output", str(out))
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((out / "compare.json").read_text())
  assert [r["run"] for r in summary["runs"]] == ["transformer_seed0", "primer_ez_seed0"]
  for run in ("transformer_seed0", "primer_ez_seed0"):
    with open(os.path.join(out, "runs", run, "eval_validation.json")) as f:
      assert [r["step"] for r in json.load(f)] == [0, 10, 20]
  assert "[compare] primer_ez_seed0:" in result.stdout


def test_the_speedup_at_every_shorter_budget_follows_the_curves():
  """A constant factor gives that factor at every budget; a lead that closes
  (the other run's factor falls from 3 to 1 over training) shrinks with it."""
  base = [_curve(f"t5_{i}", f, 1e3, group="t5") for i, f in enumerate((0.95, 1.05))]
  steady = _curve("steady", 2.0, 1e3, group="steady")
  steps = list(range(0, 1001, 10))
  fading = compare.Curve("fading", "fading", steps, [
      _power_law((1.0 + 2.0 * math.exp(-s / 200)) * s * 1e3) for s in steps], 1e3)
  table = compare.speedups(base + [steady, fading])["by_budget"]
  assert [e["budget_steps"] for e in table["steady"]] == steps[1:]
  # from step 20 on (the first interval interpolates linearly from zero compute)
  for entry in table["steady"][1:]:
    # the target is the mean of the two seeds' losses; factor 2 over their mean
    assert entry["flops"]["mean"] == pytest.approx(entry["steps"]["mean"])
    assert 1.9 < entry["steps"]["mean"] < 2.1, entry
    assert entry["reached"] == 1
  early, late = table["fading"][4], table["fading"][-1]      # steps 50 and 1000
  assert early["steps"]["mean"] > 2.0 > 1.2 > late["steps"]["mean"] > 0.9


def _entries(means, spread=0.03, start=100, every=100):
  """By-budget entries with the given mean FLOPs speedups, each seed range
  ``spread`` wide (a float, or one a budget)."""
  spreads = spread if isinstance(spread, list) else [spread] * len(means)
  return [{"budget_steps": start + i * every,
           "flops": {"mean": m, "min": m - w / 2, "max": m + w / 2, "std": w / 2,
                     "n": 3}} for i, (m, w) in enumerate(zip(means, spreads))]


def test_the_shape_of_a_closing_lead():
  """The issue's curve: a peak at 300 steps, then a steady fall."""
  s = compare.shape(_entries([1.07, 1.56, 1.57, 1.53, 1.47, 1.36, 1.28, 1.23, 1.17]))
  assert (s["peak"], s["peak_step"]) == (1.57, 300)
  assert (s["final"], s["final_step"]) == (1.17, 900)
  assert s["final_range"] == pytest.approx([1.155, 1.185])
  assert s["last_steps"] == [700, 800, 900]
  # least squares over (700, 1.28), (800, 1.23), (900, 1.17): -0.00055 a step
  assert s["slope_per_1000_steps"] == pytest.approx(-0.55)
  # the last three span 0.11, wider than the seeds' 0.03 (so the floor, 0.05)
  assert s["settled_tolerance"] == pytest.approx(0.05)
  assert s["settled"] is False and s["closing"] is True
  summary = {"baseline": "t5", "split": "validation", "target_loss": 4.0,
             "groups": {"ez": {"runs": ["a", "b", "c"], "reached": 3,
                               "speedup": {"flops": None, "steps": None,
                                           "seconds": None}}},
             "shape": {"ez": s}}
  lines = compare.format_summary(summary)
  assert s["last_mean"] == pytest.approx((1.28 + 1.23 + 1.17) / 3)
  assert lines[-2] == ("[compare] ez by budget: peak 1.57x at 300 steps, final 1.17x "
                       "at 900 (last 3 budgets' mean 1.23x); trend -0.55 per 1,000 "
                       "steps over steps 700, 800, 900; not settled (last 3 within "
                       "0.05)")
  assert lines[-1] == ("[compare] ez: the lead is closing: 1.57x at 300 steps, "
                       "1.17x at 900")


def test_a_settled_curve_within_the_seeds_spread():
  """The last three means span 0.02, inside the widest seed range there (0.08)."""
  s = compare.shape(_entries([1.3, 1.5, 1.4, 1.20, 1.22, 1.21],
                             spread=[0.02, 0.02, 0.02, 0.02, 0.08, 0.04]))
  assert (s["peak"], s["peak_step"], s["final"], s["final_step"]) == (1.5, 200, 1.21, 600)
  # (400, 1.20), (500, 1.22), (600, 1.21): slope 0.00005 a step
  assert s["slope_per_1000_steps"] == pytest.approx(0.05)
  assert s["settled_tolerance"] == pytest.approx(0.08)
  assert s["settled"] is True and s["closing"] is True


def test_a_lead_that_holds_is_not_closing_and_unreached_budgets_are_skipped():
  entries = _entries([1.4, 1.45, 1.5, 1.48, 1.47])
  entries.insert(0, {"budget_steps": 50, "flops": None})
  s = compare.shape(entries)
  assert (s["peak"], s["peak_step"]) == (1.5, 300)
  assert s["final"] == 1.47 and s["closing"] is False      # 0.03 below the peak
  assert s["settled"] is True                              # 0.03 <= 0.05
  assert s["slope_per_1000_steps"] == pytest.approx(-0.15)
  assert compare.shape([{"budget_steps": 100, "flops": None}]) is None
  summary = {"baseline": "t5", "split": "validation", "target_loss": 4.0,
             "groups": {"ez": {"runs": ["a"], "reached": 1,
                               "speedup": {"flops": None, "steps": None,
                                           "seconds": None}}},
             "shape": {"ez": s}}
  assert not any("closing" in line for line in compare.format_summary(summary))
  # too few budgets for a trend: never settled
  two = compare.shape(_entries([1.4, 1.41]))
  assert two["settled"] is False and two["slope_per_1000_steps"] == pytest.approx(0.1)


def test_speedups_record_each_runs_by_budget_curve_and_the_shape():
  """Two runs of a fading lead (factor 1 + 2 e^(-s/200) and + 3 e^(-s/200)):
  each run's by-budget speedup is kept, the mean is theirs, and the shape sees
  the lead close."""
  base = _curve("t5", 1.0, 1e3, group="t5")
  steps = list(range(0, 1001, 10))
  fading = [compare.Curve(f"ez_{a}", "ez", steps, [
      _power_law((1.0 + a * math.exp(-s / 200)) * s * 1e3) for s in steps], 1e3)
            for a in (2.0, 3.0)]
  summary = compare.speedups([base] + fading)
  for entry in summary["by_budget"]["ez"]:
    runs_here = [v for v in entry["per_run"] if v is not None]
    assert len(entry["per_run"]) == 2
    if len(runs_here) == 2:
      assert entry["flops"]["mean"] == pytest.approx(sum(runs_here) / 2)
      assert entry["per_run"][1] > entry["per_run"][0]     # the larger lead
  s = summary["shape"]["ez"]
  assert s["final_step"] == 1000 and s["peak_step"] < 200
  assert s["peak"] > 2.0 > 1.2 > s["final"] and s["closing"] is True
  assert s["slope_per_1000_steps"] < 0
  assert summary["settled_rule"] == compare.SETTLED_RULE


@pytest.mark.parametrize("vary, seed, init, data", [
    ("both", 2, 1236, 1236), ("data", 2, 1234, 1236), ("init", 2, 1236, 1234),
    ("both", 0, 1234, 1234)])
def test_compare_train_seeds_vary_what_they_say(vary, seed, init, data):
  flags = compare.seed_flags(vary, seed)
  assert flags == ["--seed", str(init), "--gin_param", f"mesh_train_dataset_fn.seed = {data}"]
  assert compare.VARIED[vary].startswith("the ")


def test_budgets_where_the_baseline_regressed_are_flagged_and_not_a_peak():
  """Vanilla's loss goes back up at step 400 (4.0 after 3.9): that budget's
  target is a loss it had bettered, so its speedup (here 2.0) is no peak."""
  base = compare.Curve("t5", "t5", [0, 100, 200, 300, 400, 500],
                       [9.0, 5.0, 4.2, 3.9, 4.0, 3.7], 1e3)
  ez = compare.Curve("ez", "ez", base.steps, [9.0, 4.6, 4.0, 3.8, 3.7, 3.65], 1e3)
  summary = compare.speedups([base, ez])
  flags = [e["baseline_regressed"] for e in summary["by_budget"]["ez"]]
  assert flags == [False, False, False, True, False]
  s = summary["shape"]["ez"]
  assert s["baseline_regressed_steps"] == [400]
  # at 400 the target (4.0) is reached at step 200: 2.0x; at 300 (3.9): between
  # 200 and 300 in log steps, 200 * 1.5 ** 0.5 = 244.9 steps, 300 / 244.9 = 1.225x
  assert summary["by_budget"]["ez"][3]["flops"]["mean"] == pytest.approx(2.0)
  assert s["peak_step"] != 400
  assert s["peak"] == max(e["flops"]["mean"] for e in summary["by_budget"]["ez"]
                          if not e["baseline_regressed"])
  summary["split"] = "validation"
  assert ("[compare] ez: the baseline's loss rose above its best so far at steps "
          "400; those budgets measure that, not a lead, and no peak is taken there"
          ) in compare.format_summary(summary)


class _FakeProcesses:
  """subprocess.Popen and subprocess.run stand-ins that log each command's start
  and end, and fail the commands that name ``fail``."""

  def __init__(self, fail=None):
    self.log, self.fail = [], fail

  def _name(self, args):
    sub = args[args.index("primer_mtf") + 1]
    return f"{sub} {os.path.basename(args[args.index('--model_dir') + 1])}"

  def popen(self, args):
    name, log, code = self._name(args), self.log, int(self.fail is not None and
                                                      self.fail in " ".join(args))
    log.append(f"start {name}")

    class Process:
      def wait(self):
        log.append(f"end {name}")
        return code
    return Process()

  def run(self, args, check=False):
    del check
    process = self.popen(args)
    return type("Done", (), {"returncode": process.wait()})()


def _train_and_compare(monkeypatch, tmp_path, fake, jobs):
  import subprocess  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(subprocess, "Popen", fake.popen)
  monkeypatch.setattr(subprocess, "run", fake.run)
  monkeypatch.setattr(compare, "compare", lambda dirs, *a, **k: dirs)
  return compare.train_and_compare(["transformer", "primer_ez"], 2, str(tmp_path),
                                   train_steps=20, evaluations=2, jobs=jobs)


def test_with_jobs_a_seeds_models_train_then_evaluate_side_by_side(monkeypatch, tmp_path):
  fake = _FakeProcesses()
  dirs = _train_and_compare(monkeypatch, tmp_path, fake, jobs=2)
  assert [os.path.basename(d) for d in dirs] == [
      "transformer_seed0", "primer_ez_seed0", "transformer_seed1", "primer_ez_seed1"]
  expected = []
  for seed in (0, 1):
    for stage in ("train", "eval"):
      names = [f"{stage} {m}_seed{seed}" for m in ("transformer", "primer_ez")]
      expected += [f"start {n}" for n in names] + [f"end {n}" for n in names]
  assert fake.log == expected
  serial = _FakeProcesses()
  _train_and_compare(monkeypatch, tmp_path, serial, jobs=1)
  assert serial.log[:4] == ["start train transformer_seed0", "end train transformer_seed0",
                            "start eval transformer_seed0", "end eval transformer_seed0"]


def test_a_failed_job_is_named_once_its_partner_has_ended(monkeypatch, tmp_path):
  fake = _FakeProcesses(fail="transformer_seed0")
  with pytest.raises(compare.UsageError, match=r"`primer-mtf train` of .*transformer_seed0 "
                     r"failed"):
    _train_and_compare(monkeypatch, tmp_path, fake, jobs=2)
  assert fake.log[-1] == "end train primer_ez_seed0"      # waited for, not orphaned
