"""Fine-tuning pretrained checkpoints, T5's way, on the shipped kjv_book task."""
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import primer_mtf  # pylint: disable=unused-import
from primer_mtf.data import text2text

from conftest import REPO, read_progress, run_cli

GIN = os.path.join(REPO, "gin")


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


PRETRAIN_STEPS, FINETUNE_STEPS, EVAL_EXAMPLES = 1200, 300, 400
# This encoder-decoder test checks the majority class and the flow only, so it
# pretrains little; beating its random start takes longer pretraining (below).
ENCODER_DECODER_PRETRAIN_STEPS = 300
LONG = 2400   # seconds: a 1,200-step run or a 400-example decode on a loaded machine
EVAL = ["--gin_param", f"mesh_eval_dataset_fn.num_eval_examples = {EVAL_EXAMPLES}"]
# A 2-layer model learns the 66-way label in 300 steps with the loss on the label
# only and a learning rate above T5's 1e-3. Measured: 28.5% and 27.0% from the
# 1,200-step pretrained checkpoint, 19.25% and 23.75% from its random start (two
# pretraining runs), 7% for the majority class
# (300 pretraining steps gave 22.0%: too close to the random start to test).
# Fine-tuning data come in the same order in every run that is compared (T5
# leaves the order unseeded, and the order alone moves the accuracy by points).
SAME_ORDER = ["--gin_param", "mesh_train_dataset_fn.seed = 1"]
TUNING = ["--format", "prefix", "--learning_rate", "0.005", *SAME_ORDER]
# The random start of the pretraining run is its checkpoint 0: keep it.
KEEP_STEP_0 = ["--gin_param", "utils.run.save_checkpoints_steps = 300",
               "--gin_param", "utils.run.keep_checkpoint_max = 10"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp("pretrain") / "primer_ez")
  _ok(run_cli("train", "--model_dir", model_dir, "--model", "primer_ez",
              "--train_steps", str(PRETRAIN_STEPS), *KEEP_STEP_0, timeout=LONG))
  return model_dir


def _finetune_and_evaluate(pretrained, model_dir, *flags):
  """Fine-tunes on kjv_book, evaluates the last checkpoint; the pretrained
  folder's bytes from before."""
  before = _bytes(pretrained)
  _ok(run_cli("finetune", "--pretrained_dir", pretrained, "--task", "kjv_book",
              "--model_dir", model_dir, "--finetune_steps", str(FINETUNE_STEPS),
              *flags, timeout=LONG))
  _keep_only_the_last_checkpoint(model_dir)
  _ok(run_cli("eval", "--model_dir", model_dir, *EVAL, timeout=LONG))
  return model_dir, before


@pytest.fixture(scope="module")
def finetuned(pretrained, tmp_path_factory):
  return _finetune_and_evaluate(
      pretrained, str(tmp_path_factory.mktemp("finetune") / "kjv_book"), *TUNING)


@pytest.fixture(scope="module")
def pretrained_encoder_decoder(tmp_path_factory):
  """The paper's encoder-decoder: Primer-EZ decoder, T5's span corruption."""
  model_dir = str(tmp_path_factory.mktemp("pretrain") / "bi_primer_ez")
  _ok(run_cli("train", "--model_dir", model_dir, "--model", "bi/primer_ez",
              "--objective", "span_corruption", "--train_steps",
              str(ENCODER_DECODER_PRETRAIN_STEPS), timeout=LONG))
  return model_dir


def _keep_only_the_last_checkpoint(model_dir):
  """Decoding every checkpoint takes minutes on CPU; the test needs the last."""
  last = tf.train.latest_checkpoint(model_dir)
  for name in os.listdir(model_dir):
    path = os.path.join(model_dir, name)
    if name.startswith("model.ckpt-") and not path.startswith(last + "."):
      os.remove(path)


def _final_accuracy(model_dir):
  """In percent, as the measurements quoted here (eval_validation.json holds
  fractions)."""
  with open(os.path.join(model_dir, "eval_validation.json")) as f:
    return 100 * json.load(f)[-1]["accuracy"]


def _majority_accuracy():
  books = [b for _, b in text2text.kjv_book_examples()["validation"][:EVAL_EXAMPLES]]
  return max(books.count(b) for b in set(books)) / len(books) * 100


@pytest.mark.slow
@pytest.mark.e2e
def test_finetuning_beats_the_majority_class(finetuned):
  model_dir, _ = finetuned
  tuned = _final_accuracy(model_dir)
  assert tuned > _majority_accuracy() + 5.0, (tuned, _majority_accuracy())


def _correct(model_dir):
  """Per validation example, whether the last evaluated checkpoint decoded its
  label: the predictions and targets mesh-tensorflow's eval writes beside its
  events (one file each)."""
  with open(os.path.join(model_dir, "eval_validation.json")) as f:
    step = json.load(f)[-1]["step"]
  (targets,) = glob.glob(os.path.join(model_dir, "*", "*_targets"))
  (predictions,) = glob.glob(os.path.join(model_dir, "*", f"*_{step}_predictions"))
  with open(targets) as f, open(predictions) as g:
    pairs = list(zip(f.read().splitlines(), g.read().splitlines(), strict=True))
  assert len(pairs) == EVAL_EXAMPLES
  return np.array([t == p for t, p in pairs])


@pytest.mark.slow
@pytest.mark.e2e
def test_finetuning_from_pretrained_beats_a_random_start(pretrained, finetuned,
                                                         tmp_path):
  """The same budget from the random weights the pretraining started from,
  decoded on the same examples: a paired comparison (McNemar's). Only the examples
  one model gets right and the other wrong tell them apart; were the two models
  equally good, each such example would be the pretrained one's with probability
  1/2, so their difference has a spread of sqrt(their count). The margin is three
  of those spreads.

  Pretraining and the fine-tuning data order are seeded, so the comparison is
  the same at every run; the margin says it is not the luck of these 400
  examples. Measured (seed 1234): 30.25% against 20.0%, 62 examples against 21
  (41 > 3 * 9.1). Before training was seeded, three pretraining runs gave
  differences of 9.25, 3.25 and 10.25 points: another seed may need longer
  pretraining to pass."""
  scratch = str(tmp_path / "scratch")
  _ok(run_cli("finetune", "--pretrained_dir", pretrained, "--checkpoint_step", "0",
              "--task", "kjv_book", "--model_dir", scratch,
              "--finetune_steps", str(FINETUNE_STEPS), *TUNING))
  _keep_only_the_last_checkpoint(scratch)
  _ok(run_cli("eval", "--model_dir", scratch, *EVAL))
  tuned, random_start = _correct(finetuned[0]), _correct(scratch)
  # the accuracies written are these decodes' (T5's accuracy metric)
  assert _final_accuracy(finetuned[0]) == pytest.approx(100 * tuned.mean(), abs=1e-9)
  assert _final_accuracy(scratch) == pytest.approx(100 * random_start.mean(),
                                                   abs=1e-9)
  only_tuned = int(np.sum(tuned & ~random_start))
  only_random = int(np.sum(random_start & ~tuned))
  assert only_tuned - only_random > 3 * np.sqrt(only_tuned + only_random), (
      only_tuned, only_random, 100 * tuned.mean(), 100 * random_start.mean())


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
  assert "run.sequence_length = {'inputs': 96, 'targets': 32}" in config   # of 128
  assert "Unitransformer.loss_on_targets_only = True" in config


@pytest.mark.slow
@pytest.mark.e2e
def test_every_variable_is_restored_and_the_first_loss_is_the_pretrained_models(
    pretrained, tmp_path):
  """One fine-tuning step at learning rate 0 through init_checkpoint, against the
  same step resumed from a copy of the pretrained checkpoint (the Saver restores
  every variable there): the same first loss, on the same first batch. Every
  weight of the new checkpoint equals the pretrained one. (--learning_rate
  refuses 0, a user's mistake; here it is bound in gin, after the flag's.)"""
  flags = ["--pretrained_dir", pretrained, "--task", "kjv_book", "--finetune_steps",
           "1", "--gin_param", "constant_learning_rate.learning_rate = 0.0"]
  model_dir = str(tmp_path / "lr0")
  _ok(run_cli("finetune", "--model_dir", model_dir, *flags))
  resumed = tmp_path / "resumed"
  resumed.mkdir()
  shutil.copy(os.path.join(model_dir, "primer_mtf_run.json"), resumed)
  for name in os.listdir(pretrained):
    if name.startswith(f"model.ckpt-{PRETRAIN_STEPS}."):
      shutil.copy(os.path.join(pretrained, name), resumed)
  (resumed / "checkpoint").write_text(
      f'model_checkpoint_path: "model.ckpt-{PRETRAIN_STEPS}"\n')
  _ok(run_cli("finetune", "--model_dir", str(resumed), *flags))
  first, reference = read_progress(model_dir)[0], read_progress(str(resumed))[0]
  assert first["step"] == reference["step"] == PRETRAIN_STEPS + 1
  assert first["loss"] == pytest.approx(reference["loss"], rel=1e-6), (first, reference)
  old = tf.train.load_checkpoint(os.path.join(pretrained, f"model.ckpt-{PRETRAIN_STEPS}"))
  new = tf.train.load_checkpoint(os.path.join(model_dir, f"model.ckpt-{PRETRAIN_STEPS + 1}"))
  weights = [n for n in old.get_variable_to_shape_map()
             if "_slot_" not in n and n != "global_step"]
  assert len(weights) > 20
  for name in weights:
    np.testing.assert_array_equal(new.get_tensor(name), old.get_tensor(name), name)
  assert new.get_tensor("global_step") == PRETRAIN_STEPS + 1
  # The checkpoint saved as fine-tuning starts: the pretrained weights and step,
  # and Adafactor's slots afresh (gin/finetune/text2text.gin).
  start = tf.train.load_checkpoint(os.path.join(model_dir, f"model.ckpt-{PRETRAIN_STEPS}"))
  for name in weights:
    np.testing.assert_array_equal(start.get_tensor(name), old.get_tensor(name), name)
  slots = [n for n in old.get_variable_to_shape_map() if "_slot_" in n]
  assert slots and all(not start.get_tensor(n).any() for n in slots)
  assert any(old.get_tensor(n).any() for n in slots)


@pytest.mark.slow
@pytest.mark.e2e
def test_t5_mesh_transformer_fine_tunes_with_the_same_gin_files(pretrained, tmp_path):
  """T5's fine-tuning recipe through the binary, as launch/tpu.sh runs it: the
  pretrained operative config, gin/finetune/prefix.gin, the task and the steps.
  Its first loss is primer-mtf finetune's, whose eval --follow then evaluates it
  and stops at its last step."""
  step = PRETRAIN_STEPS
  binary = os.path.join(os.path.dirname(sys.executable), "t5_mesh_transformer")
  model_dir = str(tmp_path / "binary")
  lengths = ['utils.run.sequence_length = {"inputs": 96, "targets": 32}',
             "Unitransformer.max_length = 128"]
  result = subprocess.run(
      [binary, "--module_import=primer_mtf", f"--gin_location_prefix={GIN}/",
       f"--gin_file={pretrained}/operative_config.gin", "--gin_file=meshes/cpu.gin",
       "--gin_file=finetune/prefix.gin", "--gin_param=text2text_task.task = 'kjv_book'",
       f"--gin_param=utils.run.init_checkpoint = '{pretrained}/model.ckpt-{step}'",
       f"--gin_param=utils.run.train_steps = {step + 2}",
       *[f"--gin_param={b}" for b in lengths], f"--model_dir={model_dir}"],
      capture_output=True, text=True, timeout=900, env=dict(os.environ))
  assert result.returncode == 0, result.stderr[-3000:]
  cli_dir = str(tmp_path / "cli")
  _ok(run_cli("finetune", "--pretrained_dir", pretrained, "--task", "kjv_book",
              "--model_dir", cli_dir, "--finetune_steps", "2", "--format", "prefix"))
  binary_first, cli_first = read_progress(model_dir)[0], read_progress(cli_dir)[0]
  assert binary_first["step"] == cli_first["step"] == step + 1
  assert binary_first["loss"] == pytest.approx(cli_first["loss"], rel=1e-6)
  follow = _ok(run_cli("eval", "--model_dir", cli_dir, "--follow", "--poll_seconds", "1",
                       "--gin_param", "mesh_eval_dataset_fn.num_eval_examples = 16"))
  assert f"[eval] step {step + 2} accuracy" in follow.stdout, follow.stdout


@pytest.mark.slow
@pytest.mark.e2e
def test_encoder_decoder_fine_tunes_and_decodes_above_the_majority_class(
    pretrained_encoder_decoder, tmp_path):
  model_dir, before = _finetune_and_evaluate(
      pretrained_encoder_decoder, str(tmp_path / "bi_kjv_book"), "--learning_rate",
      "0.005")
  assert _final_accuracy(model_dir) > _majority_accuracy() + 5.0
  assert _bytes(pretrained_encoder_decoder) == before
  assert read_progress(model_dir)[0]["step"] == ENCODER_DECODER_PRETRAIN_STEPS + 1
  with open(os.path.join(model_dir, "operative_config.gin")) as f:
    config = f.read()
  assert "run.model_type = 'bitransformer'" in config
  assert "text2text_task.task = 'kjv_book'" in config
  assert "decoder/DenseReluDense.activation = 'squared_relu'" in config
  bad = run_cli("finetune", "--pretrained_dir", pretrained_encoder_decoder, "--task",
                "kjv_book", "--model_dir", str(tmp_path / "bad"), "--format", "prefix")
  _one_error_line(bad, "is an encoder-decoder model; --format prefix does not fit")
  assert not os.path.exists(tmp_path / "bad")


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("flags, message", [
    (["--model", "primer"], "was trained with another architecture or vocabulary: "),
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


# Span corruption puts about a sixth of the tokens in the targets, so the
# encoder-decoder needs several times the decoder-only LM's steps before its
# pretraining shows in fine-tuning. Measured at 5e-3, accuracy at +100/+200/+300
# steps: from 1,200 pretraining steps 12.0/16.0/28.25 against 5.0/15.5/27.0 from
# the random start (unseeded data orders); from 4,800 steps 19.75/23.5/28.5
# against 4.0/19.25/24.5, the data in one order (seed 1).
LONG_ENCODER_DECODER_PRETRAIN_STEPS = 4800


@pytest.fixture(scope="module")
def long_pretrained_encoder_decoder(tmp_path_factory):
  """bi/primer_ez after 4,800 steps of span corruption, its random start kept."""
  model_dir = str(tmp_path_factory.mktemp("pretrain") / "bi_primer_ez_long")
  _ok(run_cli("train", "--model_dir", model_dir, "--model", "bi/primer_ez",
              "--objective", "span_corruption", "--train_steps",
              str(LONG_ENCODER_DECODER_PRETRAIN_STEPS),
              "--gin_param", "utils.run.save_checkpoints_steps = 1200",
              "--gin_param", "utils.run.keep_checkpoint_max = 10", timeout=3 * LONG))
  return model_dir


@pytest.mark.slow
@pytest.mark.e2e
def test_encoder_decoder_from_pretrained_beats_a_random_start(
    long_pretrained_encoder_decoder, tmp_path):
  """The same fine-tuning budget from the weights its pretraining started from."""
  tuned, _ = _finetune_and_evaluate(long_pretrained_encoder_decoder,
                                    str(tmp_path / "tuned"), "--learning_rate", "0.005",
                                    *SAME_ORDER)
  scratch, _ = _finetune_and_evaluate(long_pretrained_encoder_decoder,
                                      str(tmp_path / "scratch"), "--checkpoint_step",
                                      "0", "--learning_rate", "0.005", *SAME_ORDER)
  assert _final_accuracy(tuned) > _final_accuracy(scratch), (
      _final_accuracy(tuned), _final_accuracy(scratch))
