"""benchmarks/decay_check.py: the speedup when every budget is its own run."""
import importlib.util
import json
import math
import os

import pytest

from conftest import REPO

_SPEC = importlib.util.spec_from_file_location(
    "decay_check", os.path.join(REPO, "benchmarks", "decay_check.py"))
decay_check = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(decay_check)

BUDGETS = [500, 1000, 2000, 3000]


def _baseline(budget):
  """A final loss linear in log(budget): the interpolation is exact on it."""
  return 6.0 - 0.5 * math.log(budget)


def test_a_model_that_needs_two_thirds_of_the_budget_is_1_5x():
  model = [_baseline(1.5 * b) for b in BUDGETS]
  got = decay_check.budget_speedups(BUDGETS, [_baseline(b) for b in BUDGETS], model)
  assert got[500] == pytest.approx(1.5)
  assert got[1000] == pytest.approx(1.5)
  assert got[2000] == pytest.approx(1.5)
  assert got[3000] is None          # 4,500 steps: past the baseline's largest budget


def test_the_baseline_against_itself_and_a_worse_model():
  baseline = [_baseline(b) for b in BUDGETS]
  same = decay_check.budget_speedups(BUDGETS, baseline, baseline)
  assert same[500] is None          # at the smallest budget: only a bound
  assert [same[b] for b in BUDGETS[1:]] == pytest.approx([1.0, 1.0, 1.0])
  worse = decay_check.budget_speedups(BUDGETS, baseline,
                                      [_baseline(0.8 * b) for b in BUDGETS])
  assert worse[1000] == pytest.approx(0.8) and worse[3000] == pytest.approx(0.8)


def _run(root, budget, model, loss):
  folder = os.path.join(root, f"b{budget}", "kjv", "d128", "runs", f"{model}_seed0")
  os.makedirs(folder)
  rows = [{"step": budget // 2, "loss": loss + 1.0}, {"step": budget, "loss": loss}]
  with open(os.path.join(folder, "eval_validation.json"), "w") as f:
    json.dump(rows, f)


def test_the_record_reads_each_budgets_final_loss_and_sets_the_rsqrt_study_beside(
    tmp_path, capsys):
  root = str(tmp_path / "decay")
  for b in BUDGETS[:3]:
    _run(root, b, "transformer", _baseline(b))
    _run(root, b, "primer_ez", _baseline(1.25 * b))
  rsqrt = tmp_path / "scaling.json"
  rsqrt.write_text(json.dumps({"widths": [{"d_model": 128, "models": {"primer_ez": {
      "by_budget": [{"budget_steps": 1000, "flops": {"mean": 1.3}}]}}}]}))
  out = str(tmp_path / "decay_to_budget")
  record = decay_check.main(["--root", root, "--budgets", *map(str, BUDGETS),
                             "--rsqrt_record", str(rsqrt), "--out", out])
  # budget 3000 has no runs: left out
  assert [e["budget_steps"] for e in record["budgets"]] == [500, 1000, 2000]
  middle = record["budgets"][1]
  assert middle["final_loss"]["transformer"] == pytest.approx(_baseline(1000))
  assert middle["speedup_decay"] == pytest.approx(1.25)
  assert middle["speedup_rsqrt_by_budget"] == 1.3
  assert record["budgets"][2]["speedup_rsqrt_by_budget"] is None
  assert os.path.getsize(out + ".png") > 10_000
  with open(out + ".json") as f:
    assert json.load(f) == record
  assert "[decay_check] 1000 steps: decay to the budget 1.25x, constant rate 1.30x" \
      in capsys.readouterr().out


def test_fewer_than_two_budgets_is_one_line(tmp_path):
  root = str(tmp_path / "decay")
  _run(root, 500, "transformer", 5.0)
  _run(root, 500, "primer_ez", 4.9)
  with pytest.raises(SystemExit) as e:
    decay_check.main(["--root", root, "--budgets", "500", "1000",
                      "--out", str(tmp_path / "x")])
  assert "1 budget(s) have both runs evaluated" in str(e.value)
  assert not os.path.exists(str(tmp_path / "x.json"))


def test_a_missing_rsqrt_record_is_one_line_before_anything_is_written(tmp_path):
  root = str(tmp_path / "decay")
  for b in (500, 1000):
    _run(root, b, "transformer", _baseline(b))
    _run(root, b, "primer_ez", _baseline(1.25 * b))
  with pytest.raises(SystemExit) as e:
    decay_check.main(["--root", root, "--budgets", "500", "1000", "--rsqrt_record",
                      str(tmp_path / "missing.json"), "--out", str(tmp_path / "x")])
  assert "no record at --rsqrt_record" in str(e.value)
  assert not os.path.exists(str(tmp_path / "x.json"))


RECORD = os.path.join(REPO, "benchmarks", "results", "decay_to_budget_kjv_d128",
                      "decay_check.json")


def test_the_committed_record_is_what_its_archived_runs_give(tmp_path, monkeypatch):
  """The record's own command, run again on the committed runs' curves."""
  with open(RECORD) as f:
    committed = json.load(f)
  args = committed["command"].split("decay_check.py ", 1)[1].split()
  args[args.index("--out") + 1] = str(tmp_path / "again")
  monkeypatch.chdir(REPO)
  again = decay_check.main(args)
  assert again["budgets"] == committed["budgets"]
  assert len(committed["budgets"]) >= 2
