"""Eval results from TensorBoard events: real event files in, tables out."""
import csv
import json
import math
import os

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


def test_event_files_are_two_real_ones(eval_dir):
  names = sorted(os.listdir(eval_dir))
  assert len([n for n in names if n.startswith("events.out.tfevents.")]) == 2, names


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


def test_checkpoint_steps_numeric_order_with_step_zero(tmp_path):
  for name in ("model.ckpt-1000.index", "model.ckpt-20.index", "model.ckpt-0.index",
               "model.ckpt-100.index", "model.ckpt-5.index",
               # not checkpoint indexes
               "model.ckpt-100.meta", "model.ckpt-100.data-00000-of-00001",
               "model.ckpt-7.index.tempstate123", "checkpoint", "graph.pbtxt",
               "other.ckpt-3.index"):
    (tmp_path / name).write_text("")
  assert evaluation.checkpoint_steps(str(tmp_path)) == [0, 5, 20, 100, 1000]


def test_checkpoint_steps_of_a_run_without_checkpoints(tmp_path):
  (tmp_path / "operative_config.gin").write_text("")
  assert evaluation.checkpoint_steps(str(tmp_path)) == []
