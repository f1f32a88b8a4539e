"""primer-mtf score: the tasks, k-shot prompts, the JSONL format, SuperGLUE through
TFDS, and (e2e, on test_sample.py's trained Primer-EZ) scoring parity with the
teacher-forced forward pass, exact match, and one-shot accuracy trained vs
untrained on the shipped task."""
import collections
import json
import os

import numpy as np
import pytest
import tensorflow as tf2
import tensorflow_datasets as tfds

from primer_mtf.data import fewshot
from primer_mtf.errors import UsageError

from conftest import run_cli
from test_sample import fails, snapshot, trained_primer_ez


# ------------------------------------------------------------- shipped tasks

def test_kjv_ending_asks_held_out_verses_with_endings_of_other_books():
  examples = fewshot.kjv_ending("validation")
  assert len(examples) > 1000
  verses = {c: (b, t) for b, c, t in fewshot.kjv_split_verses("validation")}
  book_of_ending = collections.defaultdict(set)
  for b, t in verses.values():
    parts = fewshot.split_at_clause(t)
    if parts:
      book_of_ending[parts[1]].add(b)
  for ex in examples:
    book, text = verses[ex.source]          # a verse of a validation chapter
    assert fewshot.join(ex.context, ex.target()) == text
    assert len(set(ex.choices)) == 4
    for i, choice in enumerate(ex.choices):
      if i != ex.label:                     # a distractor: another book's ending
        assert book_of_ending[choice] - {book}, (ex.source, choice)
  positions = collections.Counter(ex.label for ex in examples)
  assert all(0.2 < positions[i] / len(examples) < 0.3 for i in range(4)), positions
  assert fewshot.get("kjv_ending").normalize == "pmi"
  fewshot.kjv_ending.cache_clear()
  assert fewshot.kjv_ending("validation") == examples      # fixed, not drawn anew
  train = {c for _, c, _ in fewshot.kjv_split_verses("train")}
  assert not train & set(verses)
  assert all(ex.source in train for ex in fewshot.kjv_ending("train")[:200])


def test_kjv_last_word_is_the_verse_without_its_last_word():
  examples = fewshot.kjv_last_word("validation")
  assert len(examples) > 1000
  verses = {c: t for _, c, t in fewshot.kjv_split_verses("validation")}
  for ex in examples:
    assert verses[ex.source].startswith(ex.context + " " + ex.answer)
    assert ex.answer[-1].isalnum() and " " not in ex.answer   # no end punctuation
  assert fewshot.get("kjv_last_word").kind == fewshot.GENERATE


def test_shots_are_drawn_from_the_train_split_by_seed_and_query_index():
  queries = fewshot.kjv_ending("validation")[:50]
  pool = fewshot.kjv_ending("train")
  texts = {fewshot.join(ex.context, ex.target()) for ex in pool}
  one = fewshot.prompts(queries, pool, 1, seed=0)
  assert one == fewshot.prompts(queries, pool, 1, seed=0)
  assert one[:10] == fewshot.prompts(queries[:10], pool, 1, seed=0)   # --limit
  other = fewshot.prompts(queries, pool, 1, seed=1)
  assert sum(a != b for a, b in zip(one, other)) >= 45
  three = fewshot.prompts(queries, pool, 3, seed=0)
  for prompt, query in zip(three, queries):
    parts = prompt.split(fewshot.DEFAULT_SEPARATOR)
    assert len(parts) == 4 and parts[-1] == query.context
    assert all(p in texts for p in parts[:3]) and len(set(parts[:3])) == 3
  assert fewshot.prompts(queries, pool, 0, seed=0) == [q.context for q in queries]
  # shots from the scored examples themselves: never the query
  for i in range(len(queries)):
    assert i not in fewshot.shot_indices(len(queries), 49, 0, i, exclude=i)
  with pytest.raises(UsageError, match="--shots 50 needs 50 examples to draw "
                                       "from, but the task's train split has 49"):
    fewshot.shot_indices(len(queries), 50, 0, 0, exclude=0)


# --------------------------------------------------------------- JSONL tasks

def _write_lines(path, lines):
  path.write_text("".join(line + "\n" for line in lines))
  return str(path)


RANK_LINES = ['{"context": "The sky is", "choices": [" blue", " loud"], "label": 0}',
              "",
              '{"context": "Two and two make", "choices": ["three", "four", "five"], '
              '"label": 1, "id": "q2"}',
              '{"context": "Amen", "choices": ["a", "b"], "label": [0, 1]}']


def test_jsonl_tasks_of_both_kinds(tmp_path):
  task = fewshot.get(_write_lines(tmp_path / "mine.jsonl", RANK_LINES))
  assert (task.name, task.kind, task.same_pool) == ("mine", fewshot.RANK, True)
  examples = task.load("validation")
  assert [ex.right for ex in examples] == [(0,), (1,), (0, 1)]
  assert examples[1].choices == ("three", "four", "five")
  gen = _write_lines(tmp_path / "gen.jsonl",
                     ['{"context": "In the beginning", "answer": "God"}'])
  train = _write_lines(tmp_path / "train.jsonl",
                       ['{"context": "Let there be", "answer": "light"}'] * 2)
  task = fewshot.get(gen, train_file=train)
  assert task.kind == fewshot.GENERATE and not task.same_pool
  assert fewshot.prompts(task.load("validation"), task.load("train"), 1, 0) == [
      "Let there be light\n\nIn the beginning"]
  with pytest.raises(UsageError, match="holds exact_match examples but .* holds "
                                       "rank_classification ones"):
    fewshot.get(str(tmp_path / "mine.jsonl"), train_file=train)


@pytest.mark.parametrize("bad, message", [
    ("{not json", ':3: not JSON'),
    ('["a", "b"]', ":3: expected a JSON object"),
    ('{"choices": ["a", "b"], "label": 0}', ':3: needs "context", a string'),
    ('{"context": "a"}', ':3: needs "choices" and "label" (rank classification) '
                         'or "answer" (exact match)'),
    ('{"context": "a", "choices": ["x"], "label": 0}',
     ':3: "choices" must be a list of two or more non-empty strings'),
    ('{"context": "a", "choices": ["x", "y"], "label": 2}',
     ':3: "label" 2 is out of range for 2 choices'),
    ('{"context": "a", "choices": ["x", "y"], "label": true}',
     ':3: "label" must be the index of the right choice'),
    ('{"context": "a", "answer": "b"}',
     ":3: an exact_match example in a file whose first example (line 1) is "
     "rank_classification"),
    ('{"context": "a", "answer": ""}', ':3: "answer" must be a non-empty string'),
])
def test_a_malformed_jsonl_line_is_one_line_with_its_number(capsys, tmp_path, bad,
                                                            message):
  """The task file is checked before the run is read: nothing is written."""
  path = _write_lines(tmp_path / "t.jsonl", [RANK_LINES[0], "", bad])
  model_dir = tmp_path / "run"
  fails(capsys, ["score", "--model_dir", str(model_dir), "--task", path],
        f"{path}{message}")
  assert not model_dir.exists()


def test_unknown_and_empty_tasks_are_one_line(capsys, tmp_path):
  fails(capsys, ["score", "--model_dir", str(tmp_path), "--task", "lambada"],
        "unknown --task 'lambada'; give a JSONL file or one of: kjv_ending, "
        "kjv_last_word, super_glue/boolq")
  empty = _write_lines(tmp_path / "empty.jsonl", ["", ""])
  fails(capsys, ["score", "--model_dir", str(tmp_path), "--task", empty],
        "has no examples")
  fails(capsys, ["score", "--model_dir", str(tmp_path), "--task",
                 str(tmp_path / "missing.jsonl")], "does not exist")
  fails(capsys, ["score", "--model_dir", str(tmp_path), "--task", "kjv_ending",
                 "--train_file", empty], "--train_file gives the shots of a JSONL "
                                         "task; no --task is a JSONL file")
  fails(capsys, ["score", "--model_dir", str(tmp_path), "--task", "kjv_ending",
                 "--shots", "-1"], "--shots -1 is negative")
  assert os.listdir(tmp_path) == ["empty.jsonl"]


# ------------------------------------------------------------------ SuperGLUE

def test_super_glue_without_data_is_one_not_prepared_line(tmp_path):
  assert fewshot.expand(["super_glue", "kjv_ending"]) == [
      f"super_glue/{t}" for t in fewshot.SUPER_GLUE] + ["kjv_ending"]
  for name, (config, _) in fewshot.SUPER_GLUE.items():
    with pytest.raises(UsageError) as e:
      fewshot.get(f"super_glue/{name}", str(tmp_path)).load("validation")
    assert str(e.value) == (
        f"TFDS dataset super_glue/{config}:1.0.2 is not prepared under {tmp_path}; "
        f"build it with `tfds build super_glue/{config}:1.0.2` or pass "
        "--tfds_data_dir")
  assert os.listdir(tmp_path) == []


class _FakeSuperGlue(tfds.text.SuperGlue):  # pylint: disable=abstract-method
  """The real builder's configs and features, with rows given by the test."""
  name = "fake_super_glue"
  rows = {}

  def _split_generators(self, dl_manager):
    return {"train": self._rows(), "validation": self._rows()}

  def _rows(self):
    yield from enumerate(self.rows[self.builder_config.name])


def _prepare_fake_super_glue(data_dir, config, rows):
  """super_glue/CONFIG:1.0.2 prepared under ``data_dir`` with ``rows`` as its train
  and validation splits, written through the real builder's features."""
  _FakeSuperGlue.rows[config] = rows
  _FakeSuperGlue(config=config, data_dir=data_dir).download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  target = os.path.join(data_dir, "super_glue", config, "1.0.2")
  os.makedirs(os.path.dirname(target), exist_ok=True)
  os.rename(os.path.join(data_dir, "fake_super_glue", config, "1.0.2"), target)
  for f in os.listdir(target):
    os.rename(os.path.join(target, f),
              os.path.join(target, f.replace("fake_super_glue-", "super_glue-")))
  info_path = os.path.join(target, "dataset_info.json")
  with open(info_path) as f:
    info = json.load(f)
  info["name"] = "super_glue"
  with open(info_path, "w") as f:
    json.dump(info, f)


def test_prepared_super_glue_reads_as_rank_classification(tmp_path):
  data_dir = str(tmp_path)
  _prepare_fake_super_glue(data_dir, "copa", [
      {"premise": "The man broke his toe.", "choice1": "He dropped a hammer.",
       "choice2": "He got a hole in his sock.", "question": "cause", "label": 0,
       "idx": 0},
      {"premise": "I tipped the bottle.", "choice1": "It froze.",
       "choice2": "It poured out.", "question": "effect", "label": 1, "idx": 1}])
  _prepare_fake_super_glue(data_dir, "cb", [
      {"premise": "It rained.", "hypothesis": "It was dry.", "label": 1, "idx": 0}])
  _prepare_fake_super_glue(data_dir, "record", [
      {"passage": "Ann met Bob.\n@highlight\nThey talked.",
       "query": "@placeholder greeted Bob.", "entities": ["Bob", "Ann"],
       "answers": ["Ann"], "idx": {"passage": 0, "query": 0}}])
  copa = fewshot.get("super_glue/copa", data_dir).load("validation")
  assert set(copa) == {
      fewshot.Example("The man broke his toe because",
                      (" he dropped a hammer.", " he got a hole in his sock."), 0),
      fewshot.Example("I tipped the bottle so", (" it froze.", " it poured out."), 1)}
  cb, = fewshot.get("super_glue/cb", data_dir).load("train")
  assert cb == fewshot.Example(
      "It rained.\nquestion: It was dry. true, false, or neither?\nanswer:",
      (" true", " false", " neither"), 1)
  record, = fewshot.get("super_glue/record", data_dir).load("validation")
  assert record.context == "Ann met Bob.\n- They talked.\n"
  assert record.choices == (" Ann greeted Bob.", " Bob greeted Bob.")
  assert record.right == (0,)
  with pytest.raises(UsageError, match="super_glue/boolq:1.0.2 is not prepared"):
    fewshot.get("super_glue/boolq", data_dir).load("validation")


# ------------------------------------------------ e2e: a trained Primer-EZ

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  return trained_primer_ez(str(tmp_path_factory.getbasetemp()))


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.mark.slow
@pytest.mark.e2e
def test_scores_are_the_teacher_forced_sum_of_log_softmax(model_dir):
  """utils.run's score_from_strings (the scoring route) against numpy's
  log-softmax of the restored model's teacher-forced logits."""
  from primer_mtf.commands import sampling, scoring  # pylint: disable=g-import-not-at-top
  run = sampling.open_run(model_dir)
  vocab = sampling.vocabulary()
  queries = fewshot.kjv_ending("validation")[:5]
  contexts = fewshot.prompts(queries, fewshot.kjv_ending("train"), 1, seed=0)
  pairs = [(c, choice) for c, q in zip(contexts, queries) for choice in q.choices]
  pairs.append(("", "In the beginning God created the heaven"))   # no context
  scores = scoring.log_likelihoods(run, *zip(*pairs))
  rows = [(vocab.encode(c.strip()), vocab.encode(x.strip())) for c, x in pairs]
  with sampling.RestoredLM(run.length, run.checkpoint) as lm:
    logits = lm.logits([c + x for c, x in rows])
  logp = _log_softmax(logits.astype(np.float64))
  expected = [sum(logp[i, len(c) + t, token] for t, token in enumerate(x))
              for i, (c, x) in enumerate(rows)]
  np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-3)
  assert np.ptp(scores) > 10     # the scores differ: the test is not trivial


@pytest.mark.slow
@pytest.mark.e2e
def test_exact_match_counts_greedy_continuations(model_dir, tmp_path):
  """A generative JSONL task whose answers are the model's own greedy
  continuations for half the examples and wrong for the other half: 50%."""
  from primer_mtf.commands import sampling, scoring  # pylint: disable=g-import-not-at-top
  run = sampling.open_run(model_dir)
  vocab = sampling.vocabulary()
  contexts = [ex.context for ex in fewshot.kjv_last_word("validation")[:24]]
  prompts = [vocab.encode(c) for c in contexts]
  with sampling.RestoredLM(run.length, run.checkpoint) as lm:
    out = lm.sample(prompts, 2)
  lines = []
  for context, prompt, row in zip(contexts, prompts, out):
    new = sampling.new_tokens(row, len(prompt), 2)
    answer = vocab.decode(new).strip()
    if sampling.EOS not in new and vocab.encode(answer) == new:  # re-encodes alike
      lines.append({"context": context, "answer": answer})
  assert len(lines) >= 8, lines
  lines = lines[:8]
  for line in lines[4:]:
    line["answer"] = "Zerubbabel Zerubbabel"
  path = _write_lines(tmp_path / "echo.jsonl", [json.dumps(l) for l in lines])
  rows, _ = scoring.score(model_dir, [path], shots=0, report=lambda _: None)
  assert rows[0]["accuracy"] == 0.5 and rows[0]["examples"] == 8


def _events(folder):
  out = {}
  for name in os.listdir(folder):
    for event in tf2.compat.v1.train.summary_iterator(os.path.join(folder, name)):
      for value in event.summary.value:
        out[(value.tag, event.step)] = float(tf2.make_ndarray(value.tensor))
  return out


LIMIT = 200
# At chance an accuracy varies by binomial noise (sd 0.031 on 200 examples) and
# by the untrained model's own random init, which favours or disfavours endings
# that share words with their context: the step-0 checkpoints of four training
# runs scored 0.219, 0.224, 0.274 and 0.234 on all 1,057 examples (pmi), sd about
# 0.025. The band is three times both together (0.04): an untrained model lies
# within chance +- 0.12, and a trained one must lie above that band, where an
# untrained one does not reach. On the first 200 examples, one unseeded run scored
# 0.18 untrained and 0.455 trained 300 steps (0.384 on all 1,057); the seeded run
# (--seed 1234, the default) scores 0.30 and 0.435.
UNTRAINED_BAND = 0.12
# The same models' log-likelihoods of the choices after their one-shot contexts,
# per token, on the first LL_EXAMPLES examples (about 2,800 tokens; 4 choices
# each). Untrained, the logits do not depend on the token to come, so by Jensen's
# inequality their mean log-loss is at least ln(vocabulary size), more by about
# half the logits' variance (9.06 measured against ln 4096 = 8.32); a spread of
# about 0.03 nats on this many tokens leaves the 0.1 margin below it unreached.
# Trained, the model must beat a unigram model of the train split's tokens on the
# same tokens (measured 4.60 at step 300 against 5.96 for the unigram model),
# which lies well below ln(vocabulary size): the two bands are apart by more than
# two nats.
LL_EXAMPLES = 50
UNTRAINED_ABOVE_LOG_V = (-0.1, 1.5)


def _log_loss_per_token(model_dir, step):
  """(mean -log p of each choice token after its one-shot context, the tokens,
  the vocabulary size) at checkpoint ``step``."""
  from primer_mtf.commands import sampling, scoring  # pylint: disable=g-import-not-at-top
  run = sampling.open_run(model_dir, checkpoint_step=step)
  vocab = sampling.vocabulary()
  queries = fewshot.kjv_ending("validation")[:LL_EXAMPLES]
  contexts = fewshot.prompts(queries, fewshot.kjv_ending("train"), 1, seed=0)
  pairs = [(c, choice) for c, q in zip(contexts, queries) for choice in q.choices]
  scores = scoring.log_likelihoods(run, *zip(*pairs))
  tokens = np.concatenate([vocab.encode(x.strip()) for _, x in pairs])
  return -scores.sum() / len(tokens), tokens, vocab


def _unigram_log_loss(vocab, tokens):
  """numpy's reference: mean -log p of ``tokens`` under the train split's token
  frequencies (add-one smoothed)."""
  counts = np.ones(vocab.vocab_size)
  for _, _, text in fewshot.kjv_split_verses("train"):
    np.add.at(counts, vocab.encode(text), 1)
  return -np.mean(np.log(counts[tokens] / counts.sum()))


@pytest.mark.slow
@pytest.mark.e2e
def test_one_shot_kjv_ending_trained_above_chance_untrained_at_chance(model_dir,
                                                                      tmp_path):
  empty_tfds = str(tmp_path / "no_tfds")
  trained = run_cli("score", "--model_dir", model_dir, "--task", "kjv_ending",
                    "--task", "super_glue/copa", "--tfds_data_dir", empty_tfds,
                    "--shots", "1", "--limit", str(LIMIT))
  assert trained.returncode == 0, trained.stderr[-3000:]
  assert (f"[score] skipping super_glue/copa: TFDS dataset super_glue/copa:1.0.2 "
          f"is not prepared under {empty_tfds}") in trained.stdout
  from primer_mtf.commands import scoring  # pylint: disable=g-import-not-at-top
  scoring.score(model_dir, ["kjv_ending"], shots=1, limit=LIMIT, checkpoint_step=0,
                report=lambda _: None)
  with open(os.path.join(model_dir, "score_kjv_ending_1shot.json")) as f:
    table = json.load(f)
  assert [r["step"] for r in table] == [0, 300]       # one row a checkpoint
  first, last = table
  assert first["chance"] == last["chance"] == 0.25    # 1 of 4 choices
  assert abs(first["accuracy"] - first["chance"]) < UNTRAINED_BAND, first
  assert last["accuracy"] > last["chance"] + UNTRAINED_BAND, last
  assert last["normalize"] == "pmi"
  assert f"accuracy {last['accuracy']:.4f} on {LIMIT} examples" in trained.stdout
  events = _events(os.path.join(model_dir, "score"))
  assert events[("kjv_ending/1shot/accuracy", 0)] == pytest.approx(first["accuracy"])
  assert events[("kjv_ending/1shot/accuracy", 300)] == pytest.approx(last["accuracy"])

  untrained_loss, tokens, vocab = _log_loss_per_token(model_dir, 0)
  trained_loss, _, _ = _log_loss_per_token(model_dir, 300)
  log_v = np.log(vocab.vocab_size)
  unigram = _unigram_log_loss(vocab, tokens)
  low, high = UNTRAINED_ABOVE_LOG_V
  assert log_v + low < untrained_loss < log_v + high, (untrained_loss, log_v)
  assert unigram < log_v + low - 2.0, (unigram, log_v)   # the bands are apart
  assert trained_loss < unigram, (trained_loss, unigram, log_v)


@pytest.mark.slow
@pytest.mark.e2e
def test_a_k_shot_prompt_longer_than_the_model_is_one_line(capsys, model_dir):
  before = snapshot(model_dir)
  fails(capsys, ["score", "--model_dir", model_dir, "--task", "kjv_ending",
                 "--shots", "8"],
        "task kjv_ending: the 8-shot prompt of example 1 with its longest choice is")
  assert snapshot(model_dir) == before
