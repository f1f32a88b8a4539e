"""``primer-mtf bench --quick`` produces every figure, finite, and writes its files.

No thresholds: the figures are measurements of a possibly shared machine.
"""
import json
import math
import os

import pytest

from conftest import run_cli

EXPECTED = [
    "step_overhead_primer_ez", "step_overhead_primer", "step_overhead_release_conv",
    "step_overhead_fused_conv",
    "utilisation_tiny", "utilisation_small", "utilisation_small_stock_layout",
    "attention_layout_small",
    *[f"profile_{part}_share_{arm}" for arm in ("transformer", "primer_ez")
      for part in ("attention", "optimizer", "embedding_and_loss", "layout")],
    "profile_dconv_share_primer_ez", "input_pipeline_tiny", "decode_primer_ez_tiny",
    "decode_incremental_speedup_tiny", "sharding_2x2_tiny", "memory_tiny",
    "memory_small", "memory_medium",
    *[f"quality_{m}_tiny" for m in ("transformer_plusplus", "squared_relu", "mdha",
                                    "primer_ez", "primer")],
    "quality_primer_ez_d256", "quality_primer_ez_d384", "quality_primer_ez_d512"]


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
    assert f["value"] > 0, key
    if f["source"] == "measured now":
      assert math.isfinite(f["wall_clock_value"]), key
    assert f["source"] in ("measured now", "recorded", "traced now"), key
  assert all(figures[k]["source"] == "traced now" for k in figures
             if k.startswith("profile_"))
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
