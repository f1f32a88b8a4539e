"""The LM objective: documents + EOS, concatenated, cut to full-length targets."""
import os

import numpy as np
import pytest
import seqio
import tensorflow.compat.v1 as tf

import primer_mtf  # pylint: disable=unused-import
from primer_mtf.data import corpus
from primer_mtf.data import splits
from primer_mtf.data import tasks
from primer_mtf.data import vocab as vocab_lib
from primer_mtf.errors import UsageError


@pytest.fixture(scope="module")
def local_task(tmp_path_factory):
  path = tmp_path_factory.mktemp("corpus") / "c.txt"
  rng = np.random.RandomState(0)
  words = ["".join(rng.choice(list("abcdefghij"), rng.randint(2, 7)))
           for _ in range(200)]
  lines = [" ".join(rng.choice(words, rng.randint(3, 30))) for _ in range(60)]
  path.write_text("\n".join(lines))
  return tasks.corpus_task(corpus=str(path), vocab_size=32), lines, str(path)


def test_targets_are_the_eos_joined_token_stream_cut_to_length(local_task):
  name, lines, _ = local_task
  task = seqio.get_mixture_or_task(name)
  vocab = task.output_features["targets"].vocabulary
  length = 16
  got = [ex["targets"] for ex in task.get_dataset(
      {"targets": length}, split="validation", shuffle=False).as_numpy_iterator()]
  stream = []
  for doc in splits.split(lines, "validation"):
    stream += vocab.encode(doc) + [1]
  expected = [stream[i:i + length] for i in range(0, len(stream), length)]
  assert [list(g) for g in got] == expected
  assert all(len(g) == length for g in got[:-1])


def test_task_is_registered_once_and_named_by_corpus(local_task):
  name, _, path = local_task
  assert name.startswith("primer_mtf_lm_local_") and name.endswith("_sp32")
  assert name in seqio.TaskRegistry.names()
  registered = len(seqio.TaskRegistry.names())
  task = seqio.get_mixture_or_task(name)
  assert tasks.corpus_task(corpus=path, vocab_size=32) == name  # a second call
  assert len(seqio.TaskRegistry.names()) == registered
  assert seqio.get_mixture_or_task(name) is task  # the same task, not replaced


def _no_training(*args, **kwargs):
  raise AssertionError("the cached vocabulary was trained again")


def test_vocabulary_is_cached_and_t5_ids(local_task, monkeypatch):
  name, _, path = local_task
  vocab = seqio.get_mixture_or_task(name).output_features["targets"].vocabulary
  assert vocab.pad_id == 0 and vocab.eos_id == 1 and vocab.unk_id == 2
  assert vocab.vocab_size == 32
  model_file = vocab.sentencepiece_model_file
  assert model_file.startswith(vocab_lib.cache_dir()), model_file
  before = os.stat(model_file)
  monkeypatch.setattr(vocab_lib, "train", _no_training)
  assert tasks.corpus_task(corpus=path, vocab_size=32) == name  # a second call
  assert tasks.trained_vocabulary(corpus.resolve(path), 32) == model_file
  after = os.stat(model_file)
  assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def _release_objective_targets(document_lengths, length=512):
  """Targets of the chunks_as_released objective for pre-tokenized documents:
  document i is the ids 1000 i + 3, 1000 i + 4, ... (never EOS = 1)."""
  docs = [np.arange(3, 3 + n, dtype=np.int32) + 1000 * i
          for i, n in enumerate(document_lengths)]

  def dataset_fn(split, shuffle_files, seed=None):
    del split, shuffle_files, seed
    return tf.data.Dataset.from_generator(
        lambda: ({"targets": d} for d in docs),
        output_signature={"targets": tf.TensorSpec([None], tf.int32)})

  name = f"release_objective_test_{'_'.join(map(str, document_lengths))}"
  token_preprocessors, add_eos = tasks.lm_objective("chunks_as_released")
  if name not in seqio.TaskRegistry.names():
    seqio.TaskRegistry.add(
        name, source=seqio.FunctionDataSource(dataset_fn, splits=["train"]),
        preprocessors=list(token_preprocessors),
        output_features={"targets": seqio.Feature(
            seqio.PassThroughVocabulary(1 << 20, eos_id=1), add_eos=add_eos)})
  ds = seqio.get_mixture_or_task(name).get_dataset(
      {"targets": length}, split="train", shuffle=False, seed=7)
  return [list(ex["targets"]) for ex in ds.as_numpy_iterator()], docs


def _assert_release_pieces(pieces):
  for piece in pieces:
    assert piece[-1] == 1, "every target ends in EOS"
    assert 1 not in piece[:-1], "no separator inside a target"
  assert all(len(p) == 512 for p in pieces[:-1])


def test_release_objective_cuts_511_token_pieces_and_appends_eos():
  pieces, (doc,) = _release_objective_targets([10 * 511])
  assert len(pieces) == 10
  _assert_release_pieces(pieces)
  assert [t for p in pieces for t in p[:-1]] == list(doc)


def test_release_objective_reads_one_aligned_chunk_of_65536_tokens():
  pieces, (doc,) = _release_objective_targets([3 * tasks.RELEASE_CHUNK_TOKENS])
  # 65,536 = 128 x 511 + 128: 128 full targets and one of 128 tokens + EOS
  assert [len(p) for p in pieces] == [512] * 128 + [129]
  _assert_release_pieces(pieces)
  tokens = [t for p in pieces for t in p[:-1]]
  start = tokens[0] - doc[0]
  assert start % tasks.RELEASE_CHUNK_TOKENS == 0
  assert tokens == list(doc[start:start + tasks.RELEASE_CHUNK_TOKENS])


def test_release_objective_concatenates_documents_with_no_separator():
  pieces, docs = _release_objective_targets([300, 400])
  assert [len(p) for p in pieces] == [512, 190]   # 700 = 511 + 189
  _assert_release_pieces(pieces)
  assert [t for p in pieces for t in p[:-1]] == list(docs[0]) + list(docs[1])


def test_release_objective_on_a_corpus_task(local_task):
  _, _, path = local_task
  name = tasks.corpus_task(corpus=path, vocab_size=32, objective="chunks_as_released")
  assert name.endswith("_sp32_chunks_as_released")
  pieces = [list(ex["targets"]) for ex in seqio.get_mixture_or_task(name).get_dataset(
      {"targets": 16}, split="validation", shuffle=False, seed=1).as_numpy_iterator()]
  assert pieces and all(p[-1] == 1 and 1 not in p[:-1] for p in pieces)
  assert all(len(p) == 16 for p in pieces[:-1])


def test_an_unknown_objective_is_one_line():
  with pytest.raises(UsageError, match="unknown objective 'lm'.*eos_per_document"):
    tasks.corpus_task(objective="lm")


def test_span_corruption_needs_t5s_target_lengths():
  assert tasks.span_corruption_targets_length(512) == 114   # T5's pretraining
  assert tasks.span_corruption_targets_length(128) == 29


def test_span_corruption_drops_15_percent_in_spans_that_the_targets_restore(local_task):
  """Each example's sentinels in the inputs, filled with the spans that follow the
  same sentinels in the targets, give back the corpus's token stream in order."""
  _, lines, path = local_task
  with pytest.raises(UsageError, match="needs sentinel ids"):
    tasks.corpus_task(corpus=path, vocab_size=32, objective="span_corruption")
  name = tasks.corpus_task(corpus=path, vocab_size=32, extra_ids=100,
                           objective="span_corruption")
  task = seqio.get_mixture_or_task(name)
  vocab = task.output_features["targets"].vocabulary
  assert vocab.vocab_size == 132
  sentinels = set(range(32, 132))
  examples = list(task.get_dataset({"inputs": 32, "targets": 10}, split="validation",
                                   shuffle=False, seed=1).as_numpy_iterator())
  restored, full = [], 0
  for ex in examples:
    inputs, targets = list(ex["inputs"]), list(ex["targets"])
    assert inputs[-1] == 1 and targets[-1] == 1   # EOS after each
    marks = [t for t in inputs if t in sentinels]
    assert marks == [t for t in targets if t in sentinels] and marks
    assert marks == sorted(marks, reverse=True)   # T5's: the last id first
    spans, current = {}, None
    for t in targets[:-1]:
      if t in sentinels:
        current = spans.setdefault(t, [])
      else:
        current.append(t)
    whole = []
    for t in inputs[:-1]:
      whole += spans[t] if t in sentinels else [t]
    noise = sum(map(len, spans.values()))
    if len(whole) == 34:   # a full piece: random_spans_helper(32) reads 34 tokens
      full += 1
      assert (noise, len(inputs), len(targets)) == (5, 32, 8), (noise, ex)
    restored += whole
  stream = [t for doc in splits.split(lines, "validation") for t in vocab.encode(doc)]
  assert restored == stream and full == len(examples) - 1
