"""Fine-tuning pretrained checkpoints, T5's way, on the shipped kjv_book task."""
import json
import os

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import primer_mtf  # pylint: disable=unused-import
from primer_mtf.data import text2text

from conftest import read_progress, run_cli


def _ok(result):
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def _one_error_line(result, message):
  assert result.returncode == 2, result.stderr[-2000:]
  lines = [l for l in result.stderr.strip().splitlines() if l.startswith("primer-mtf")]
  assert len(lines) == 1 and lines[0].startswith("primer-mtf: error: "), result.stderr
  assert message in lines[0], lines[0]


def _bytes(folder):
  out = {}
  for root, _, files in os.walk(folder):
    for name in files:
      with open(os.path.join(root, name), "rb") as f:
        out[os.path.relpath(os.path.join(root, name), folder)] = f.read()
  return out


def test_kjv_book_holds_out_the_pretraining_validation_chapters():
  examples = text2text.kjv_book_examples()
  assert len(examples["train"]) + len(examples["validation"]) == 31103
  assert len(examples["validation"]) == 1573   # the verses of 59 held-out chapters
  train_verses = {v for v, _ in examples["train"]}
  repeated = [v for v, _ in examples["validation"] if v in train_verses]
  assert len(repeated) < 40, repeated   # formulas, and Ezra 2 retold in Nehemiah 7
  books = {b for _, b in examples["train"]}
  assert len(books) == 66 and "First Samuel" in books and "1 Samuel" not in books


def test_a_task_folder_reads_jsonl_and_tsv_and_names_bad_lines(tmp_path):
  good = tmp_path / "good"
  good.mkdir()
  (good / "train.jsonl").write_text('{"inputs": "a", "targets": "b"}\n\n'
                                    '{"inputs": "c", "targets": "d"}\n')
  (good / "validation.tsv").write_text("e\tf\n")
  (good / "task.json").write_text('{"metric": "bleu"}')
  examples, metric = text2text.folder_examples(str(good))
  assert examples == {"train": [("a", "b"), ("c", "d")], "validation": [("e", "f")]}
  assert metric == "bleu"
  (good / "train.jsonl").write_text('{"inputs": "a", "targets": "b"}\n{"inputs": 3}\n')
  with pytest.raises(primer_mtf.errors.UsageError, match=r"train.jsonl:2: expected"):
    text2text.folder_examples(str(good))
  (good / "train.jsonl").write_text('{"inputs": "a", "targets": "b"}\nnot json\n')
  with pytest.raises(primer_mtf.errors.UsageError, match=r"train.jsonl:2: not JSON"):
    text2text.folder_examples(str(good))


PRETRAIN_STEPS, FINETUNE_STEPS, EVAL_EXAMPLES = 300, 300, 400
EVAL = ["--gin_param", f"mesh_eval_dataset_fn.num_eval_examples = {EVAL_EXAMPLES}"]
# A 2-layer model learns the 66-way label in 300 steps with the loss on the label
# only and a learning rate above T5's 1e-3 (measured: 15% against a 7% majority).
TUNING = ["--format", "prefix", "--learning_rate", "0.005"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp("pretrain") / "primer_ez")
  _ok(run_cli("train", "--model_dir", model_dir, "--model", "primer_ez",
              "--train_steps", str(PRETRAIN_STEPS)))
  return model_dir


@pytest.fixture(scope="module")
def finetuned(pretrained, tmp_path_factory):
  before = _bytes(pretrained)
  model_dir = str(tmp_path_factory.mktemp("finetune") / "kjv_book")
  _ok(run_cli("finetune", "--pretrained_dir", pretrained, "--task", "kjv_book",
              "--model_dir", model_dir, "--finetune_steps", str(FINETUNE_STEPS),
              *TUNING))
  _keep_only_the_last_checkpoint(model_dir)
  _ok(run_cli("eval", "--model_dir", model_dir, *EVAL))
  return model_dir, before


def _keep_only_the_last_checkpoint(model_dir):
  """Decoding every checkpoint takes minutes on CPU; the test needs the last."""
  last = tf.train.latest_checkpoint(model_dir)
  for name in os.listdir(model_dir):
    path = os.path.join(model_dir, name)
    if name.startswith("model.ckpt-") and not path.startswith(last + "."):
      os.remove(path)


def _final_accuracy(model_dir):
  with open(os.path.join(model_dir, "eval_validation.json")) as f:
    return json.load(f)[-1]["accuracy"]


def _majority_accuracy():
  books = [b for _, b in text2text.kjv_book_examples()["validation"][:EVAL_EXAMPLES]]
  return max(books.count(b) for b in set(books)) / len(books) * 100


@pytest.mark.slow
@pytest.mark.e2e
def test_finetuning_beats_the_majority_class(finetuned):
  model_dir, _ = finetuned
  tuned = _final_accuracy(model_dir)
  assert tuned > _majority_accuracy() + 5.0, (tuned, _majority_accuracy())


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.xfail(reason="not yet at this scale: measured 17.25% from the 300-step "
                   "pretrained checkpoint against 27.25% from its random start")
def test_finetuning_from_pretrained_beats_a_random_start(pretrained, finetuned,
                                                         tmp_path):
  """The same budget from the random weights the pretraining started from."""
  scratch = str(tmp_path / "scratch")
  _ok(run_cli("finetune", "--pretrained_dir", pretrained, "--checkpoint_step", "0",
              "--task", "kjv_book", "--model_dir", scratch,
              "--finetune_steps", str(FINETUNE_STEPS), *TUNING))
  _keep_only_the_last_checkpoint(scratch)
  _ok(run_cli("eval", "--model_dir", scratch, *EVAL))
  tuned = _final_accuracy(finetuned[0])
  assert tuned > _final_accuracy(scratch) + 5.0, (tuned, _final_accuracy(scratch))


@pytest.mark.slow
@pytest.mark.e2e
def test_finetuning_continues_the_pretrained_step_and_leaves_it_untouched(
    pretrained, finetuned):
  model_dir, before = finetuned
  progress = read_progress(model_dir)
  assert progress[0]["step"] == PRETRAIN_STEPS + 1
  assert progress[-1]["step"] == PRETRAIN_STEPS + FINETUNE_STEPS
  assert _bytes(pretrained) == before
  with open(os.path.join(model_dir, "operative_config.gin")) as f:
    config = f.read()
  assert "constant_learning_rate.learning_rate = 0.005" in config
  assert "run.model_type = 'delimited_lm'" in config
  assert "Unitransformer.loss_on_targets_only = True" in config


@pytest.mark.slow
@pytest.mark.e2e
def test_every_variable_is_restored_from_the_pretrained_checkpoint(pretrained, tmp_path):
  """One fine-tuning step at learning rate 0: every weight of the new checkpoint
  equals the pretrained one, so none was left at its initialiser."""
  model_dir = str(tmp_path / "lr0")
  _ok(run_cli("finetune", "--pretrained_dir", pretrained, "--task", "kjv_book",
              "--model_dir", model_dir, "--finetune_steps", "1",
              "--learning_rate", "0.0"))
  old = tf.train.load_checkpoint(os.path.join(pretrained, f"model.ckpt-{PRETRAIN_STEPS}"))
  new = tf.train.load_checkpoint(os.path.join(model_dir, f"model.ckpt-{PRETRAIN_STEPS + 1}"))
  weights = [n for n in old.get_variable_to_shape_map()
             if "_slot_" not in n and n != "global_step"]
  assert len(weights) > 20
  for name in weights:
    np.testing.assert_array_equal(new.get_tensor(name), old.get_tensor(name), name)
  assert new.get_tensor("global_step") == PRETRAIN_STEPS + 1


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("flags, message", [
    (["--model", "primer"], "was trained with another architecture: it has no variable"),
    (["--task", "no_such_task"], "unknown --task 'no_such_task'"),
    (["--task", "glue_cola_v002"], "task glue_cola_v002 is tokenized with "
                                   "gs://t5-data/vocabs/cc_all.32000/sentencepiece.model"),
    (["--format", "bidirectional"], "unknown --format 'bidirectional'"),
])
def test_bad_finetuning_input_is_one_line_before_any_step(pretrained, tmp_path, flags,
                                                          message):
  model_dir = str(tmp_path / "bad")
  args = {"--task": "kjv_book"}
  args.update(dict(zip(flags[::2], flags[1::2])))
  argv = ["finetune", "--pretrained_dir", pretrained, "--model_dir", model_dir]
  for k, v in args.items():
    argv += [k, v]
  _one_error_line(run_cli(*argv), message)
  assert not os.path.exists(model_dir)
