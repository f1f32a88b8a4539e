"""Runs the chosen sections of ``primer-mtf bench`` and writes their report."""
import datetime
import os
import time

from primer_mtf.bench import records
from primer_mtf.bench import report
from primer_mtf.bench import sections
from primer_mtf.bench.harness import log
from primer_mtf.bench.train_step import Steps
from primer_mtf.errors import UsageError

# figures a mode leaves out, by key: why (shown in the table)
NOT_MEASURED = {}


def chosen(only=None):
  """The sections to run, in table order; one line for an unknown name."""
  unknown = sorted(set(only or ()) - set(sections.NAMES))
  if unknown:
    raise UsageError(f"unknown bench section {', '.join(unknown)}; choose from "
                     f"{', '.join(sections.NAMES)}")
  return [s for s in sections.SECTIONS if not only or s.name in only]


def run(quick=False, out="bench", only=None, memory_sizes=None, command=None):
  """Runs the benchmarks; writes bench.json, bench.md and bench.png into ``out``.
  Returns the result dict and the paths written."""
  todo = chosen(only)
  names = [s.name for s in todo]
  if memory_sizes and "memory" in names:
    records.checkout_script("planner_memory.py")   # before anything is timed
  if "quality" in names or ("memory" in names and not memory_sizes):
    log(f"reading recorded results from {records.folder()}")
  log(f"writing into {os.path.abspath(out)}")
  s = sections.SETTINGS["quick" if quick else "full"]
  os.makedirs(out, exist_ok=True)
  result = {"command": command or "primer-mtf bench" + (" --quick" if quick else ""),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "mode": "quick" if quick else "full", "machine": report.machine(),
            "settings": s, "figures": [], "details": {},
            "not_measured": dict(NOT_MEASURED)}
  started = time.perf_counter()
  ctx = sections.Context(settings=s, steps=Steps(), out=out,
                         memory_sizes=tuple(memory_sizes or ()))
  try:
    for section in todo:
      t0 = time.perf_counter()
      figs, detail = section.run(ctx)
      detail["section_seconds"] = time.perf_counter() - t0
      result["figures"] += figs
      result["details"][section.name] = detail
      for f in figs:
        log(f"{f['key']}: {f['value']:.3g}" + (f" (target {f['target']})"
                                              if f["target"] else ""))
  finally:
    ctx.steps.close()
  result["total_seconds"] = time.perf_counter() - started
  return result, report.write(result, out)
