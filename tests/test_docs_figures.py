"""The speedups the docs quote past the early transient are the committed records'.

Every table row in README.md and docs/performance.md whose first cell names a
corpus of the study is read and set against
``benchmarks/results/scaling_2000_steps/CORPUS/scaling.json``:

- a summary row, ``| kjv | 128 | 3 | 1.41x at 300 | 1.07x (1.02-1.12) | 1.05, 1.08,
  1.07 | yes |``: width, seeds, peak and where, the final speedup and its range over
  seeds (", 2 of 3 seeds reach it" when not every seed gets down to vanilla's
  loss), the last three budgets' means, and whether that is past the transient;
- a by-budget row, ``| kjv, d_model 128, 3 seeds | 1.04 | 1.35 | ... |``: the mean
  FLOPs speedup at each budget of the table's header ("-" where Primer-EZ never
  got down to vanilla's loss; a summary's final is then "never reached").

The decay-to-budget table of docs/performance.md is set against
``benchmarks/results/decay_to_budget_kjv_d128/decay_check.json`` the same way.

Fast tier: JSON and markdown only.
"""
import json
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPORA = ("kjv", "pydocs")
MODEL = "primer_ez"


def record(corpus):
  with open(os.path.join(REPO, "benchmarks", "results", "scaling_2000_steps",
                         corpus, "scaling.json")) as f:
    return json.load(f)


def width_row(corpus, d_model):
  rows = [r for r in record(corpus)["widths"] if r["d_model"] == d_model]
  assert rows, f"no d_model {d_model} in the {corpus} record"
  return rows[0]


def tables(path):
  """Each markdown table of a file: its rows, each a list of stripped cells
  (bold marks removed)."""
  out, current = [], []
  with open(path) as f:
    for line in f:
      line = line.strip()
      if line.startswith("|") and line.endswith("|"):
        cells = [c.strip().replace("**", "") for c in line[1:-1].split("|")]
        if not all(set(c) <= set("-: ") for c in cells):
          current.append(cells)
      elif current:
        out.append(current)
        current = []
  if current:
    out.append(current)
  return out


def markdown_row(cells):
  return "| " + " | ".join(cells) + " |"


def summary_cells(corpus, d_model):
  """A summary row's cells as the record gives them."""
  row = width_row(corpus, d_model)
  shape = row["models"][MODEL]["shape"]
  final = row["models"][MODEL]["final_speedup"]["flops"]
  seeds = len(row["seeds"])
  if final is None:   # Primer-EZ never got down to vanilla's final loss
    final_text = "never reached"
  else:
    final_text = f"{final['mean']:.2f}x" + (
        f" ({final['min']:.2f}-{final['max']:.2f})" if seeds > 1 else "") + (
        f", {final['n']} of {seeds} seeds reach it" if final["n"] < seeds else "")
  return [corpus, str(d_model), str(seeds),
          f"{shape['peak']:.2f}x at {shape['peak_step']:,}", final_text,
          ", ".join(f"{m:.2f}" for m in shape["last_means"]),
          "yes" if shape["settled"] else "no"]


BY_BUDGET = re.compile(r"^(kjv|pydocs), d_model (\d+), (\d+) seeds?$")


def quoted_rows(path):
  """(kind, corpus, d_model, header, cells) of every row that quotes the study."""
  out = []
  for table in tables(path):
    header = table[0]
    for cells in table[1:]:
      if cells[0] in CORPORA:
        out.append(("summary", cells[0], int(cells[1]), header, cells))
      match = BY_BUDGET.match(cells[0])
      if match:
        out.append(("by_budget", match.group(1), int(match.group(2)), header, cells))
  return out


@pytest.mark.parametrize("doc", ["README.md", os.path.join("docs", "performance.md")])
def test_every_quoted_speedup_is_the_records(doc):
  rows = quoted_rows(os.path.join(REPO, doc))
  kinds = {kind for kind, *_ in rows}
  assert "summary" in kinds, f"{doc} quotes no summary row of the study"
  if doc != "README.md":
    assert kinds == {"summary", "by_budget"}
  for kind, corpus, d_model, header, cells in rows:
    if kind == "summary":
      assert cells == summary_cells(corpus, d_model), (doc, cells)
      continue
    row = width_row(corpus, d_model)
    seeds = int(BY_BUDGET.match(cells[0]).group(3))
    assert seeds == len(row["seeds"]), (doc, cells[0])
    means = {e["budget_steps"]: e["flops"] and e["flops"]["mean"]
             for e in row["models"][MODEL]["by_budget"]}
    budgets = [int(b.replace(",", "")) for b in header[1:]]
    assert budgets == sorted(means), (doc, header)
    assert cells[1:] == [f"{means[b]:.2f}" if means[b] is not None else "-"
                         for b in budgets], (doc, cells[0])


def test_a_changed_figure_is_caught(tmp_path):
  """The control: the same check on a copy of the page with one figure changed."""
  page = os.path.join(REPO, "docs", "performance.md")
  rows = quoted_rows(page)
  kind, corpus, d_model, _, cells = next(r for r in rows
                                         if r[0] == "summary" and "x" in r[4][4])
  with open(page) as f:
    text = f.read()
  line = markdown_row(cells)
  assert line in text
  changed = tmp_path / "performance.md"
  wrong = cells[:4] + ["9.99x" + cells[4][cells[4].index("x") + 1:]] + cells[5:]
  changed.write_text(text.replace(line, markdown_row(wrong)))
  (_, _, _, _, got), = [r for r in quoted_rows(str(changed))
                        if r[0] == kind and r[1] == corpus and r[2] == d_model]
  assert got != summary_cells(corpus, d_model)


DECAY_RECORD = os.path.join(REPO, "benchmarks", "results", "decay_to_budget_kjv_d128",
                            "decay_check.json")
DECAY_HEADER = ["budget (steps)", "vanilla's final loss"]


def decay_rows(path):
  """The decay-to-budget table's rows of a page: [budget, vanilla's loss,
  Primer-EZ's loss, decayed speedup, constant-rate speedup]."""
  found = [t for t in tables(path) if t[0][:2] == DECAY_HEADER]
  assert len(found) == 1, f"{path}: {len(found)} decay-to-budget tables"
  return found[0][1:]


def decay_cells(entry):
  """A decay table row as the record gives it ("-" where it holds null)."""
  def speedup(v):
    return "-" if v is None else f"{v:.2f}x"
  loss = entry["final_loss"]
  return [f"{entry['budget_steps']:,}", f"{loss['transformer']:.3f}",
          f"{loss['primer_ez']:.3f}", speedup(entry["speedup_decay"]),
          speedup(entry["speedup_rsqrt_by_budget"])]


def test_the_decay_to_budget_table_is_its_records():
  with open(DECAY_RECORD) as f:
    record = json.load(f)
  rows = decay_rows(os.path.join(REPO, "docs", "performance.md"))
  assert [r[:5] for r in rows] == [decay_cells(e) for e in record["budgets"]]


def test_a_changed_decay_figure_is_caught(tmp_path):
  page = os.path.join(REPO, "docs", "performance.md")
  with open(page) as f:
    text = f.read()
  first = decay_rows(page)[0]
  line = markdown_row(first)
  assert line in text
  changed = tmp_path / "performance.md"
  changed.write_text(text.replace(line, markdown_row(first[:3] + ["9.99x"] + first[4:])))
  with open(DECAY_RECORD) as f:
    entry = json.load(f)["budgets"][0]
  assert decay_rows(str(changed))[0] != decay_cells(entry)


@pytest.mark.parametrize("doc", [os.path.join("docs", "performance.md"),
                                 os.path.join("benchmarks", "results", "README.md")])
def test_the_docs_quote_the_decay_records_own_command(doc):
  with open(DECAY_RECORD) as f:
    command = json.load(f)["command"]
  with open(os.path.join(REPO, doc)) as f:
    assert command in f.read(), f"{doc} does not quote {command}"
