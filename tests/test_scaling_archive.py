"""benchmarks/scaling.py's archive: the study's records outlive its weights.

The archive keeps, of each finished run, the two files a record is computed from
(``primer_mtf_run.json``, ``eval_validation.json``). The graph test sets every
committed width whose curves are archived against the committed record: the
record is what those curves give, written again by the same code.
"""
import importlib.util
import json
import os

import pytest

from conftest import REPO

_SPEC = importlib.util.spec_from_file_location(
    "scaling", os.path.join(REPO, "benchmarks", "scaling.py"))
scaling = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(scaling)

MODELS = ["transformer", "primer_ez"]
STUDY = os.path.join(REPO, "benchmarks", "results", "scaling_2000_steps")


def _run(folder, name, last_step):
  run = os.path.join(folder, "runs", name)
  os.makedirs(run)
  with open(os.path.join(run, "primer_mtf_run.json"), "w") as f:
    json.dump({"model": name.split("_seed")[0], "kind": "pretraining"}, f)
  with open(os.path.join(run, "eval_validation.json"), "w") as f:
    json.dump([{"step": 100, "loss": 5.0}, {"step": last_step, "loss": 4.0}], f)
  for weights in ("model.ckpt-200.index", "model.ckpt-200.data-00000-of-00001"):
    with open(os.path.join(run, weights), "wb") as f:
      f.write(b"\0" * 64)


def test_the_archive_holds_the_finished_seeds_curves_and_no_weights(tmp_path):
  folder = str(tmp_path / "bench" / "d64")
  for model in MODELS:
    _run(folder, f"{model}_seed0", 200)
  _run(folder, "transformer_seed1", 200)
  _run(folder, "primer_ez_seed1", 100)          # still training: not archived
  archive = str(tmp_path / "archive" / "d64")
  scaling.archive_runs(folder, archive, MODELS, 200)
  kept = sorted(os.path.relpath(os.path.join(r, n), archive)
                for r, _, names in os.walk(archive) for n in names)
  assert kept == sorted(os.path.join("runs", f"{m}_seed0", f)
                        for m in MODELS for f in scaling.CURVE_FILES)
  for name in scaling.CURVE_FILES:
    with open(os.path.join(folder, "runs", "primer_ez_seed0", name)) as a, \
         open(os.path.join(archive, "runs", "primer_ez_seed0", name)) as b:
      assert a.read() == b.read()
  # an archive is itself a study folder: its seeds count as finished
  assert scaling.finished_runs(archive, MODELS, 200)[0] == [0]


def test_a_carried_row_is_marked_and_an_open_width_is_not_carried(tmp_path):
  record = {"command": "benchmarks/scaling.py --summarise_only",
            "widths": [{"d_model": 64, "seeds": [0]}, {"d_model": 128, "seeds": [0, 1, 2]}],
            "partial": [{"d_model": 64, "seeds_finished": [0], "seeds_planned": 3}]}
  (tmp_path / "scaling.json").write_text(json.dumps(record))
  row = scaling.carried_row(str(tmp_path), 128)
  assert row["seeds"] == [0, 1, 2] and "--summarise_only" in row["carried"]
  assert scaling.carried_row(str(tmp_path), 64) is None      # partial: not whole
  assert scaling.carried_row(str(tmp_path), 256) is None
  assert scaling.carried_row(str(tmp_path / "nowhere"), 128) is None


def test_carry_without_summarise_only_is_refused(capsys):
  with pytest.raises(SystemExit) as exit_info:
    scaling.main(["--carry", "128", "--out", "unused"])
  assert exit_info.value.code == 2
  assert "--carry keeps rows of a record" in capsys.readouterr().err


def _archived_widths():
  out = []
  for corpus in sorted(os.listdir(STUDY)):
    path = os.path.join(STUDY, corpus)
    if not os.path.isdir(path):
      continue
    for width in sorted(os.listdir(path)):
      if width.startswith("d") and os.path.isdir(os.path.join(path, width, "runs")):
        out.append((corpus, int(width[1:])))
  return out


@pytest.mark.graph
@pytest.mark.parametrize("corpus,width", _archived_widths())
def test_the_committed_record_is_what_the_archived_curves_give(corpus, width, tmp_path):
  with open(os.path.join(STUDY, corpus, "scaling.json")) as f:
    record = json.load(f)
  committed = [r for r in record["widths"] if r["d_model"] == width]
  assert committed and "carried" not in committed[0]
  folder = os.path.join(STUDY, corpus, f"d{width}")
  seeds, dirs = scaling.finished_runs(folder, MODELS, record["train_steps"])
  assert seeds == committed[0]["seeds"]
  from primer_mtf.commands import compare  # pylint: disable=g-import-not-at-top
  summary, _, _ = compare.compare(dirs, str(tmp_path), group_by_model=len(seeds) > 1)
  again = json.loads(json.dumps(scaling.summarise(width, seeds, summary)))
  assert again == committed[0]
