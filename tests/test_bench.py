"""``primer-mtf bench``: its timing harness measures what it says, its sections
table matches the command line, its records are found (installed too), the step
it times takes its optimizer settings from gin, and ``--quick`` writes every
figure.

The figures themselves get no thresholds: they are measurements of a possibly
shared machine. The harness is checked on workloads whose ratio is known.
"""
import ast
import json
import math
import os
import subprocess
import sys

import pytest

from conftest import REPO, run_cli

EXPECTED = [
    "step_overhead_primer_ez", "step_overhead_primer", "step_overhead_release_conv",
    "step_overhead_fused_conv",
    "utilisation_tiny", "utilisation_small", "utilisation_small_stock_layout",
    "attention_layout_small",
    *[f"profile_{part}_share_{arm}" for arm in ("transformer", "primer_ez")
      for part in ("attention", "optimizer", "embedding_and_loss", "layout")],
    "profile_dconv_share_primer_ez", "input_pipeline_tiny", "decode_primer_ez_tiny",
    "decode_incremental_speedup_tiny", "sharding_2x2_tiny", "memory_tiny",
    "memory_small", "memory_medium", *[f"quality_{m}_tiny" for m in (
        "transformer_plusplus", "squared_relu", "mdha", "primer_ez", "primer")],
    "quality_primer_ez_d256", "quality_primer_ez_d384", "quality_primer_ez_d512"]
QUALITY = [k for k in EXPECTED if k.startswith("quality_")]


class _Clock:
  """Stands in for the ``time`` module: arms advance it by known CPU and wall
  seconds, so the harness's arithmetic is checked exactly, not the machine."""

  def __init__(self):
    self.cpu = self.wall = 0.0

  def process_time(self):
    return self.cpu

  def perf_counter(self):
    return self.wall

  def work(self, cpu, wall):
    self.cpu += cpu
    self.wall += wall


def test_a_ratio_of_k_times_the_work_is_k(monkeypatch):
  from primer_mtf.bench import harness
  clock = _Clock()
  monkeypatch.setattr(harness, "time", clock)
  rounds = iter(range(100))
  # "three" costs 3 CPU seconds to "one"'s 1; other jobs add 0-4 s of wall time
  # to every third call of either arm, which the CPU figures must not see.
  def arm(cpu):
    return lambda: clock.work(cpu, cpu + (4.0 if next(rounds) % 3 == 0 else 0.0))
  times = harness.interleave({"one": arm(1.0), "three": arm(3.0)}, rounds=5, warmup=1)
  assert times["one"] == [1.0] * 5 and times["three"] == [3.0] * 5
  assert len(times.wall["three"]) == 5
  r = harness.ratio(times, "three", "one")
  assert (r["median"], r["min"], r["max"], r["rounds"]) == (3.0, 3.0, 3.0, 5)
  wall = [t / o for t, o in zip(times.wall["three"], times.wall["one"])]
  assert r["wall"]["median"] == sorted(wall)[2] and r["wall"]["min"] == min(wall)
  assert min(wall) < 3.0 < max(wall)   # the stand-in for other jobs did reach wall time
  # a derived figure: work a second of "three" over "one" is 1
  per_second = harness.ratio(times, "three", "one", lambda a, b: (3 / a) / (1 / b))
  assert per_second["median"] == 1.0, per_second
  summary = harness.summary(times, "three")
  assert summary["median_cpu_seconds"] == 3.0 and summary["cpu_seconds"] == [3.0] * 5


def test_interleave_rotates_the_order_and_warms_up_untimed():
  from primer_mtf.bench import harness
  calls = []
  times = harness.interleave({n: (lambda n=n: calls.append(n)) for n in "abc"},
                             rounds=3, warmup=2)
  assert calls == list("abcabc") + list("abc") + list("bca") + list("cab")
  assert all(len(times[n]) == 3 for n in "abc")


def _bench_parser_only_choices():
  from primer_mtf import cli
  sub = next(a for a in cli.parser()._actions if a.dest == "command")  # pylint: disable=protected-access
  only = next(a for a in sub.choices["bench"]._actions if a.dest == "only")  # pylint: disable=protected-access
  return tuple(only.choices)


def test_the_sections_table_has_each_only_name_in_order():
  from primer_mtf.bench import sections
  assert sections.NAMES == _bench_parser_only_choices()
  assert len(set(sections.NAMES)) == len(sections.NAMES)
  assert all(callable(s.run) for s in sections.SECTIONS)


def test_an_unknown_section_is_one_line():
  from primer_mtf.bench import runner
  from primer_mtf.errors import UsageError
  with pytest.raises(UsageError, match="unknown bench section nope"):
    runner.chosen(["quality", "nope"])
  assert [s.name for s in runner.chosen(["quality", "step"])] == ["step", "quality"]


def test_the_records_are_found_and_setup_py_installs_each():
  from primer_mtf.bench import records
  folder = records.folder()
  assert all(os.path.isfile(os.path.join(folder, n)) for n in records.NAMES)
  with open(os.path.join(REPO, "setup.py")) as f:
    tree = ast.parse(f.read())
  installed = next(ast.literal_eval(n.value) for n in ast.walk(tree)
                   if isinstance(n, ast.Assign)
                   and getattr(n.targets[0], "id", None) == "BENCH_RECORDS")
  assert sorted(installed) == sorted(records.NAMES)


def test_quality_figures_are_the_records_speedups():
  from primer_mtf.bench import records, sections
  figures, detail = sections.quality(None)
  assert [f["key"] for f in figures] == QUALITY
  compare, _ = records.load(records.COMPARE)
  primer_ez = next(f for f in figures if f["key"] == "quality_primer_ez_tiny")
  assert primer_ez["value"] == compare["groups"]["primer_ez"]["speedup"]["flops"]["mean"]
  assert all(f["source"] == "recorded" for f in figures)
  assert detail["sources"] == [os.path.join("benchmarks", "results", n)
                               for n in (records.COMPARE, records.SCALING)]


def test_memory_sizes_without_a_checkout_is_one_line(tmp_path, monkeypatch):
  from primer_mtf.bench import records, runner
  from primer_mtf.errors import UsageError
  monkeypatch.setattr(records, "CHECKOUT", str(tmp_path))
  monkeypatch.chdir(tmp_path)
  with pytest.raises(UsageError) as e:
    runner.run(quick=True, out=str(tmp_path / "out"), only=["memory"],
               memory_sizes=["tiny"])
  assert "benchmarks/planner_memory.py" in str(e.value)
  assert "\n" not in str(e.value)
  assert not (tmp_path / "out").exists()   # refused before anything was written


@pytest.mark.graph
def test_the_timed_step_takes_its_learning_rate_from_gin():
  """The step is utils.run's: a learning rate of 0 bound in gin leaves the loss
  where it was; gin's own schedule lowers it (a hard-coded rate would not)."""
  import primer_mtf
  primer_mtf.load()
  from primer_mtf.bench import train_step
  steps = train_step.Steps()
  try:
    frozen = steps.get("transformer", "tiny", 4, 32,
                       gin_params=["utils.run.learning_rate_schedule = 0.0"])
    trained = steps.get("transformer", "tiny", 4, 32)
    for step in (frozen, trained):
      step(4)
    assert (frozen.batch, frozen.length, frozen.tokens) == (4, 32, 128)
    assert frozen.finite() and trained.finite()
    assert max(frozen.losses) - min(frozen.losses) < 1e-5, frozen.losses
    assert trained.losses[-1] < trained.losses[0] - 0.05, trained.losses
    assert frozen.losses[0] == pytest.approx(trained.losses[0], abs=1e-5)
  finally:
    steps.close()


@pytest.mark.e2e
def test_the_installed_command_reads_its_records_from_any_folder(tmp_path):
  """The venv's installed ``primer-mtf`` (reinstall the checkout first), run
  outside the checkout."""
  command = os.path.join(os.path.dirname(sys.executable), "primer-mtf")
  if not os.path.exists(command):
    pytest.skip("primer-mtf is not installed in this venv")
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  result = subprocess.run([command, "bench", "--quick", "--only", "quality",
                           "--out", "b"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "site-packages" in result.stderr and os.path.join(
      "primer_mtf", "bench", "records") in result.stderr, result.stderr[-2000:]
  table = result.stdout.splitlines()
  assert table[0].startswith("| figure |")
  assert len([l for l in table if "training FLOPs speedup" in l]) == len(QUALITY)
  with open(tmp_path / "b" / "bench.json") as f:
    assert [f["key"] for f in json.load(f)["figures"]] == QUALITY
  assert "[bench] wrote b/bench.json" in result.stdout


@pytest.mark.slow
@pytest.mark.e2e
def test_bench_quick_writes_every_figure(tmp_path):
  out = tmp_path / "bench"
  result = run_cli("bench", "--quick", "--out", str(out), timeout=1800)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(out / "bench.json") as f:
    bench = json.load(f)
  figures = {f["key"]: f for f in bench["figures"]}
  assert sorted(figures) == sorted(EXPECTED)
  for key, f in figures.items():
    assert isinstance(f["value"], float) and math.isfinite(f["value"]), key
    if f["source"] == "measured now":
      assert math.isfinite(f["wall_clock_value"]), key
    assert f["source"] in ("measured now", "recorded", "traced now"), key
  # shares of one step's op time: each in (0, 1), the parts of an arm under 1
  for arm in ("transformer", "primer_ez"):
    shares = [figures[f"profile_{p}_share_{arm}"]["value"]
              for p in ("attention", "optimizer", "embedding_and_loss")]
    assert all(0 < s < 1 for s in shares) and sum(shares) < 1, (arm, shares)
  assert 0 < figures["profile_dconv_share_primer_ez"]["value"] < 1
  assert all(figures[k]["source"] == "traced now" for k in figures
             if k.startswith("profile_"))
  # re-running the whole prefix for every token costs more than decoding with state
  assert figures["decode_incremental_speedup_tiny"]["value"] > 1
  assert bench["details"]["decode"]["tiny_decoded_tokens_per_row"] == [256] * 4
  assert bench["command"].startswith("primer-mtf bench --quick")
  assert bench["mode"] == "quick" and bench["date"]
  assert bench["machine"]["cores"] >= 1 and bench["machine"]["cpu_model"]
  assert isinstance(bench["not_measured"], dict)
  # the training steps stayed finite, the release-style and unfused conv arms among them
  assert all(bench["details"]["step"]["losses_finite"].values())
  assert {"primer_ez[conv_form=release]", "primer_ez[conv_form=pack_safe]"} <= set(
      bench["details"]["step"]["losses_finite"])
  assert all(bench["details"]["sharding"]["losses_finite"].values())
  table = (out / "bench.md").read_text()
  assert table.startswith("| figure |")
  assert len(table.strip().splitlines()) == 2 + len(EXPECTED) + len(
      bench["not_measured"])
  png = (out / "bench.png").read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and os.path.getsize(out / "bench.png") > 1000
  assert "[bench] wrote" in result.stdout
