"""The LM objective: documents + EOS, concatenated, cut to full-length targets."""
import os

import numpy as np
import pytest
import seqio

import primer_mtf  # pylint: disable=unused-import
from primer_mtf.data import corpus
from primer_mtf.data import tasks
from primer_mtf.data import vocab as vocab_lib


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
  for doc in corpus.split(lines, "validation"):
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
