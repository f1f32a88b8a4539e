"""Eval results from TensorBoard events: real event files in, tables out."""
import csv
import json
import math
import os

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import primer_mtf  # pylint: disable=unused-import
from primer_mtf.commands import evaluation


def _write_events(eval_dir, suffix, steps):
  """One event file of scalar summaries (as an estimator's eval writes them).

  ``steps``: {step: {tag: value}}.
  """
  with tf.Graph().as_default():
    writer = tf.summary.FileWriter(str(eval_dir), filename_suffix=suffix)
    for step, values in steps.items():
      summary = tf.Summary(value=[tf.Summary.Value(tag=tag, simple_value=value)
                                  for tag, value in values.items()])
      writer.add_summary(summary, global_step=step)
    writer.close()


# Values exact in float32, as the event protos store them.
FIRST = {
    0: {"neg_log_perplexity": -6.5, "token_accuracy": 0.0625,
        "num_eval_tokens": 2048.0, "loss": 99.0},
    100: {"neg_log_perplexity": -4.25, "loss": 98.0},
    # an eval that wrote no neg_log_perplexity: skipped by rows
    150: {"token_accuracy": 0.5, "num_eval_tokens": 2048.0},
}
SECOND = {
    100: {"token_accuracy": 0.25, "num_eval_tokens": 2048.0},  # same step, other file
    1000: {"neg_log_perplexity": -2.0, "token_accuracy": 0.5,
           "num_eval_tokens": 2048.0, "eval/loss": 2.0},
    20: {"neg_log_perplexity": -5.5, "token_accuracy": 0.125},
}


@pytest.fixture
def eval_dir(tmp_path):
  path = tmp_path / "eval_task_validation_64"
  path.mkdir()
  _write_events(path, ".a", FIRST)
  _write_events(path, ".b", SECOND)
  (path / "graph.pbtxt").write_text("not an event file")
  return path


def _estimator_evals_write(evals):
  """What ``Estimator.evaluate`` writes after each eval (mesh-tensorflow's
  perplexity eval is one): the same functions, called directly, through the
  process's one cached writer per folder, with the checkpoint path summary it
  adds. ``evals``: [(output_dir, step, {name: value})] in the order evaluated."""
  from tensorflow_estimator.python.estimator import estimator  # pylint: disable=g-import-not-at-top
  with tf.Graph().as_default():
    for output_dir, step, metrics in evals:
      estimator._write_dict_to_summary(str(output_dir), metrics, step)  # pylint: disable=protected-access
      estimator._write_checkpoint_path_to_summary(  # pylint: disable=protected-access
          str(output_dir), f"/run/model.ckpt-{step}", step)
  tf.summary.FileWriterCache.clear()   # closes the writers: the files are whole


# Values that float32 cannot hold exactly: the event protos store float32, so the
# reader must give back float32's rounding of each, not the float64 written.
ESTIMATOR_EVALS = {
    0: {"neg_log_perplexity": np.float32(-8.3177), "token_accuracy": np.float32(0.1),
        "num_eval_tokens": np.int64(2047), "loss": np.float32(8.3177),
        "global_step": np.int64(0)},
    300: {"neg_log_perplexity": np.float32(-4.6), "token_accuracy": np.float32(0.3),
          "num_eval_tokens": np.int64(2047), "loss": np.float32(4.6),
          "global_step": np.int64(300),
          "per_position": np.array([1.5, 2.5], np.float32)},   # a tensor summary
}


def test_reads_back_exactly_what_the_estimators_eval_wrote(tmp_path):
  """Event files written by TensorFlow's estimator, read back by the code under
  test and written as JSON and CSV; every number compared exactly with float32's
  rounding of the value written (computed here by numpy, not by the reader)."""
  model_dir = tmp_path / "run"
  eval_dir = model_dir / "eval_task_validation_64"
  other_split = model_dir / "eval_task_train_64"
  # Other metrics in the folders around it: summaries of the run's own folder,
  # and another split's eval at the same step with other values.
  _estimator_evals_write(
      [(eval_dir, step, metrics) for step, metrics in ESTIMATOR_EVALS.items()] +
      [(model_dir, 300, {"neg_log_perplexity": np.float32(-1.0),
                         "learning_rate": np.float32(0.01)}),
       (other_split, 300, {"neg_log_perplexity": np.float32(-9.0),
                           "token_accuracy": np.float32(0.9)})])

  def f32(x):
    return float(np.float32(x))

  expected = {step: {"neg_log_perplexity": f32(m["neg_log_perplexity"]),
                     "token_accuracy": f32(m["token_accuracy"]),
                     "num_eval_tokens": 2047.0}
              for step, m in ESTIMATOR_EVALS.items()}
  results = evaluation.read_eval_events(str(eval_dir))
  assert results == expected
  assert results[300]["token_accuracy"] != 0.3      # float32's 0.3, not float64's
  table = evaluation.rows(results)
  path = evaluation.write_results(str(model_dir), "validation", table)
  with open(path) as f:
    written = json.load(f)
  assert [r["step"] for r in written] == [0, 300]
  for row, step in zip(written, (0, 300)):
    m = ESTIMATOR_EVALS[step]
    assert row["loss"] == -f32(m["neg_log_perplexity"])
    assert row["perplexity"] == pytest.approx(
        np.exp(-np.float64(m["neg_log_perplexity"])), rel=1e-13)
    assert row["token_accuracy"] == f32(m["token_accuracy"])
    assert row["num_eval_tokens"] == 2047.0
  header, *lines = _read_csv(model_dir / "eval_validation.csv")
  assert header == ["step", "loss", "perplexity", "token_accuracy",
                    "num_eval_tokens"]
  assert [[float(x) for x in line] for line in lines] == [
      [float(r[k]) for k in header] for r in written]


def test_a_folder_of_training_summaries_only_gives_no_results(tmp_path):
  """The negative case: summaries whose tags are not eval metrics (a run's
  training events) give no steps, no rows and an empty table."""
  _estimator_evals_write([(tmp_path, 100, {"loss": np.float32(3.5),
                                           "learning_rate": np.float32(0.01),
                                           "global_step/sec": np.float32(2.0)})])
  assert [n for n in os.listdir(tmp_path) if n.startswith("events.out.tfevents.")]
  assert evaluation.read_eval_events(str(tmp_path)) == {}
  assert evaluation.rows(evaluation.read_eval_events(str(tmp_path))) == []
  # the same folder with a prefix that its tags have: read
  assert evaluation.read_eval_events(str(tmp_path), prefix="global_step") == {
      100: {"global_step/sec": 2.0}}


def test_read_eval_events_merges_files_and_keeps_only_the_metrics(eval_dir):
  assert evaluation.read_eval_events(str(eval_dir)) == {
      0: {"neg_log_perplexity": -6.5, "token_accuracy": 0.0625,
          "num_eval_tokens": 2048.0},
      20: {"neg_log_perplexity": -5.5, "token_accuracy": 0.125},
      100: {"neg_log_perplexity": -4.25, "token_accuracy": 0.25,
            "num_eval_tokens": 2048.0},
      150: {"token_accuracy": 0.5, "num_eval_tokens": 2048.0},
      1000: {"neg_log_perplexity": -2.0, "token_accuracy": 0.5,
             "num_eval_tokens": 2048.0},
  }


def test_read_eval_events_of_an_empty_directory(tmp_path):
  assert evaluation.read_eval_events(str(tmp_path)) == {}


def test_rows_loss_perplexity_sorted_and_skipping_steps_without_loss():
  results = {
      1000: {"neg_log_perplexity": -2.0, "token_accuracy": 0.5,
             "num_eval_tokens": 2048.0},
      150: {"token_accuracy": 0.5, "num_eval_tokens": 2048.0},
      0: {"neg_log_perplexity": -6.5},
      20: {"neg_log_perplexity": 0.0, "token_accuracy": 0.125},
  }
  assert evaluation.rows(results) == [
      {"step": 0, "loss": 6.5, "perplexity": math.exp(6.5),
       "token_accuracy": None, "num_eval_tokens": None},
      {"step": 20, "loss": 0.0, "perplexity": 1.0,
       "token_accuracy": 0.125, "num_eval_tokens": None},
      {"step": 1000, "loss": 2.0, "perplexity": math.exp(2.0),
       "token_accuracy": 0.5, "num_eval_tokens": 2048.0},
  ]
  assert evaluation.rows({}) == []


def test_rows_of_the_event_files(eval_dir):
  table = evaluation.rows(evaluation.read_eval_events(str(eval_dir)))
  assert [r["step"] for r in table] == [0, 20, 100, 1000]
  assert [r["loss"] for r in table] == [6.5, 5.5, 4.25, 2.0]
  assert [r["perplexity"] for r in table] == [math.exp(l) for l in (6.5, 5.5, 4.25, 2.0)]
  assert [r["token_accuracy"] for r in table] == [0.0625, 0.125, 0.25, 0.5]


def _read_csv(path):
  with open(path, newline="") as f:
    return list(csv.reader(f))


def test_write_results_json_and_csv(tmp_path):
  table = [
      {"step": 0, "loss": 6.5, "perplexity": math.exp(6.5), "token_accuracy": None,
       "num_eval_tokens": None},
      {"step": 1000, "loss": 2.0, "perplexity": math.exp(2.0), "token_accuracy": 0.5,
       "num_eval_tokens": 2048.0},
  ]
  path = evaluation.write_results(str(tmp_path), "validation", table)
  assert path == str(tmp_path / "eval_validation.json")
  with open(path) as f:
    assert json.load(f) == table
  assert _read_csv(tmp_path / "eval_validation.csv") == [
      ["step", "loss", "perplexity", "token_accuracy", "num_eval_tokens"],
      ["0", "6.5", repr(math.exp(6.5)), "", ""],
      ["1000", "2.0", repr(math.exp(2.0)), "0.5", "2048.0"],
  ]


def test_write_results_of_an_empty_table(tmp_path):
  path = evaluation.write_results(str(tmp_path), "train", [])
  assert path == str(tmp_path / "eval_train.json")
  with open(path) as f:
    assert json.load(f) == []
  assert _read_csv(tmp_path / "eval_train.csv") == [["step"]]


def test_loss_plot_limits_fit_the_points_after_step_0(tmp_path):
  """The untrained loss at step 0 (9.4) would squash the rest: the y axis fits
  the later points and the step-0 point is noted."""
  assert evaluation._y_limits([]) is None
  low, high = evaluation._y_limits([5.0, 4.5, 4.0])
  assert 3.8 < low < 4.0 and 5.0 < high < 5.2
  model_dir = tmp_path / "run"
  model_dir.mkdir()
  (model_dir / "primer_mtf_run.json").write_text(json.dumps(
      {"model": "primer_ez", "size": "tiny", "corpus": "kjv"}))
  table = [{"step": 0, "loss": 9.4}, {"step": 100, "loss": 5.0},
           {"step": 200, "loss": 4.5}]
  path = evaluation.plot(str(model_dir), "validation", table)
  assert os.path.getsize(path) > 0
  assert evaluation.run_label(str(model_dir)) == "primer_ez tiny on kjv (run)"
  assert evaluation.run_label(str(tmp_path / "none")) == "none"


def test_majority_class_only_where_the_targets_are_classes():
  from primer_mtf.commands import finetune  # pylint: disable=g-import-not-at-top
  books = [b"Genesis"] * 6 + [b"Exodus"] * 3 + [b"Job"]
  assert finetune.majority_fraction(books) == pytest.approx(0.6)
  assert finetune.majority_fraction([f"free text {i}" for i in range(10)]) is None
  assert finetune.majority_fraction([]) is None
  # a few examples of many classes: still classes where some repeat
  assert finetune.majority_fraction(["a", "a", "b", "c"]) == 0.5
