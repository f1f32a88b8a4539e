"""The embedded corpus, the local-text rules, the split, the resolver and data order."""
import json
import os
import re

import pytest
import seqio
import tensorflow_datasets as tfds

import primer_mtf  # pylint: disable=unused-import
from primer_mtf.data import corpus
from primer_mtf.data import pydocs
from primer_mtf.data import splits
from primer_mtf.data import tasks
from primer_mtf.errors import DataNotPrepared, UsageError


def test_kjv_is_one_document_per_chapter():
  docs = corpus.documents("kjv")
  assert len(docs) == 1189  # chapters of the King James Bible
  assert docs[0].startswith("In the beginning God created the heaven and the earth.")
  assert docs[-1].endswith("The grace of our Lord Jesus Christ be with you all. Amen.")


def test_split_is_deterministic_disjoint_and_complete():
  docs = [f"doc {i}" for i in range(103)]
  train, val = splits.split(docs, "train"), splits.split(docs, "validation")
  assert sorted(train + val) == sorted(docs)
  assert not set(train) & set(val)
  assert val == [f"doc {i}" for i in range(19, 103, 20)]
  assert splits.split(docs, "validation") == val


@pytest.mark.parametrize("n", [2, 3, 7, 19, 20, 21])
def test_every_corpus_of_two_documents_has_both_splits(n):
  docs = [str(i) for i in range(n)]
  assert splits.split(docs, "train") and splits.split(docs, "validation")


def test_kjv_validation_is_about_five_percent():
  docs = corpus.documents("kjv")
  assert len(splits.split(docs, "validation")) == 1189 // 20


def test_file_is_one_document_per_nonempty_line(tmp_path):
  path = tmp_path / "c.txt"
  path.write_text("first doc\n\n  second doc  \nthird\n", encoding="utf-8")
  assert corpus.documents(str(path)) == ["first doc", "second doc", "third"]


def test_folder_is_one_document_per_file_in_path_order(tmp_path):
  (tmp_path / "b").mkdir()
  (tmp_path / "b" / "2.txt").write_text("two\nlines")
  (tmp_path / "1.txt").write_text("one")
  (tmp_path / ".hidden").write_text("skipped")
  assert corpus.documents(str(tmp_path)) == ["one", "two\nlines"]


def test_fingerprint_follows_content():
  assert corpus.fingerprint(["a", "b"]) != corpus.fingerprint(["a", "c"])
  assert corpus.fingerprint(["ab"]) != corpus.fingerprint(["a", "b"])


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    (b"\n \n", "has no text"),
    (b"only one line\n", "only 1 document"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "not a text file"),
    (b"caf\xe9\nabc\n", "not UTF-8"),
])
def test_bad_corpora_say_what_is_wrong(tmp_path, content, message):
  path = tmp_path / "corpus.txt"
  if content is not None:
    path.write_bytes(content)
  with pytest.raises(UsageError, match=message):
    corpus.documents(str(path))


def test_resolve_names_each_kind_once(tmp_path):
  path = tmp_path / "c.txt"
  path.write_text("one doc\nanother doc\n")
  local = corpus.resolve(str(path))
  assert local.name == str(path) and local.key == "local_" + corpus.fingerprint(
      ["one doc", "another doc"])
  assert local.text_field == "text"
  assert list(local.vocab_documents()) == ["one doc"]   # the training split
  embedded = corpus.resolve("kjv")
  assert embedded.name == embedded.key == "kjv"
  with pytest.raises(UsageError, match="lm1b:1.1.0 is not prepared under"):
    corpus.resolve("lm1b", tfds_data_dir=str(tmp_path / "no_tfds"))
  assert corpus.canonical_name("lm1b") == "lm1b"
  assert corpus.canonical_name("rel/path") == os.path.abspath("rel/path")


def _texts(ds):
  return [ex["text"].decode() for ex in ds.as_numpy_iterator()]


def test_training_order_is_shuffled_per_epoch_and_eval_order_fixed():
  docs = [f"document {i}" for i in range(200)]
  source = corpus.documents_source(docs)
  train = splits.split(docs, "train")
  two_epochs = _texts(source.get_dataset("train", shuffle=True, seed=5).repeat(2))
  first, second = two_epochs[:len(train)], two_epochs[len(train):]
  assert sorted(first) == sorted(second) == sorted(train)
  assert first != train and second != first     # shuffled, and anew each epoch
  again = _texts(source.get_dataset("train", shuffle=True, seed=5))
  assert again == first                          # the run's seed fixes the order
  assert _texts(source.get_dataset("validation", shuffle=False)) == splits.split(
      docs, "validation")


def test_first_training_batch_draws_from_the_whole_ordered_corpus(tmp_path):
  """An ordered corpus (like the Bible, or a sorted folder) is not trained from its
  first document to its last: the run's first batch spans all of it."""
  n = 3000
  path = tmp_path / "ordered.txt"
  path.write_text("".join(" ".join([f"w{i:04d}"] * 20) + "\n" for i in range(n)))
  name = tasks.corpus_task(corpus=str(path), vocab_size=64)
  task = seqio.get_mixture_or_task(name)
  vocab = task.output_features["targets"].vocabulary
  # what mesh_train_dataset_fn asks of seqio for the tiny size's first batch
  ds = task.get_dataset({"targets": 128}, split="train", shuffle=True, seed=1234,
                        num_epochs=None)
  batch = [ex["targets"] for ex in ds.take(16).as_numpy_iterator()]
  seen = sorted({int(m) for ids in batch
                 for m in re.findall(r"\bw(\d{4})\b", vocab.decode(ids.tolist()))})
  assert len(seen) >= 10
  assert seen[0] < n // 4 and seen[-1] >= 3 * n // 4, seen


def test_a_tfds_corpus_is_one_line_of_the_table(monkeypatch, tmp_path):
  """The README's example for contributors: one TFDS_CORPORA line, nothing else."""
  monkeypatch.setitem(corpus.TFDS_CORPORA, "wiki40b", corpus.TfdsCorpus(
      "wiki40b/en:1.3.0", {"train": "train", "validation": "validation"}))
  assert corpus.canonical_name("wiki40b") == "wiki40b"
  with pytest.raises(UsageError, match="wiki40b/en:1.3.0 is not prepared under"):
    tasks.corpus_task(corpus="wiki40b", tfds_data_dir=str(tmp_path))


def test_a_tfds_version_this_tfds_cannot_build_is_one_line(monkeypatch):
  monkeypatch.setitem(corpus.TFDS_CORPORA, "c4_future", corpus.TfdsCorpus(
      "c4/en:9.9.9", {"train": "train", "validation": "validation"}))
  with pytest.raises(DataNotPrepared, match=r"c4/en:9\.9\.9 is not prepared under .*"
                     r"cannot build it .*TFDS_CORPORA"):
    corpus.resolve("c4_future")


@pytest.mark.parametrize("name", sorted(corpus.TFDS_CORPORA))
def test_every_tfds_corpus_without_data_is_one_not_prepared_line(name, tmp_path):
  spec = corpus.TFDS_CORPORA[name]
  with pytest.raises(DataNotPrepared) as e:
    corpus.resolve(name, tfds_data_dir=str(tmp_path))
  message = str(e.value)
  assert "\n" not in message
  assert message.startswith(f"TFDS dataset {spec.tfds_name} is not prepared under "
                            f"{tmp_path}")


def _prepare_fake_tfds(data_dir, tfds_name, texts):
  """A prepared TFDS dataset named ``tfds_name`` ("name/config:version") holding
  ``texts`` in train and validation, built by a throwaway builder and renamed."""
  class FakeText(tfds.core.GeneratorBasedBuilder):  # pylint: disable=abstract-method
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
          {"text": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(), "validation": self._generate_examples()}

    def _generate_examples(self):
      for i, text in enumerate(texts):
        yield i, {"text": text}

  FakeText(data_dir=data_dir).download_and_prepare()
  name_config, version = tfds_name.split(":")
  name, config = name_config.split("/")
  target = os.path.join(data_dir, name, config, version)
  os.makedirs(os.path.dirname(target))
  os.rename(os.path.join(data_dir, "fake_text", "1.0.0"), target)
  for f in os.listdir(target):
    os.rename(os.path.join(target, f), os.path.join(target, f.replace("fake_text-", name + "-")))
  info_path = os.path.join(target, "dataset_info.json")
  with open(info_path) as f:
    info = json.load(f)
  info.update(name=name, configName=config, version=version)
  with open(info_path, "w") as f:
    json.dump(info, f)


def test_the_papers_c4_version_is_read_from_prepared_files(tmp_path):
  """This TFDS cannot build c4/en:3.0.1, but reads it once prepared."""
  texts = ["the first document", "the second one", "and a third"]
  _prepare_fake_tfds(str(tmp_path), corpus.TFDS_CORPORA["c4_v301"].tfds_name, texts)
  resolved = corpus.resolve("c4_v301", tfds_data_dir=str(tmp_path))
  assert sorted(resolved.vocab_documents()) == sorted(texts)
  ds = resolved.source.get_dataset("validation", shuffle=False)
  assert sorted(ex["text"].decode() for ex in ds.as_numpy_iterator()) == sorted(texts)


def test_the_vocabulary_reads_training_documents_only(tmp_path):
  path = tmp_path / "c.txt"
  path.write_text("".join(f"document {i}\n" for i in range(40)))
  docs = corpus.resolve(str(path)).vocab_documents()
  assert docs == splits.split(corpus.documents(str(path)), "train")
  assert len(docs) == 38 and "document 19" not in docs


def test_long_documents_are_cut_under_sentencepieces_limit_not_dropped():
  from primer_mtf.data import vocab   # pylint: disable=g-import-not-at-top
  words = " ".join(f"w{i}é" for i in range(30000))          # ~240 KB, one line
  unbroken = "x" * 70000 + "ü" * 10                          # no whitespace at all
  pieces = list(vocab.pieces_under_limit(["short", words, unbroken], limit=65536))
  assert pieces[0] == "short"
  assert all(len(p.encode("utf-8")) <= 65536 for p in pieces)
  assert " ".join(pieces[1:-2]) == words and "".join(pieces[-2:]) == unbroken


def test_pydocs_is_the_installed_python_documentation_with_no_download():
  """The second corpus: the language-reference topics first, then a document of
  docstrings a module; several MB; named like kjv, keyed by its content."""
  docs = corpus.documents("pydocs")
  assert docs[0].startswith('The "assert" statement')     # topics, sorted by name
  assert len(docs) > 800 and sum(map(len, docs)) > 3_000_000
  assert any(d.startswith("Record of phased-in incompatible language changes")
             for d in docs)                                # __future__'s docstring
  assert all(pydocs._keep(ch) for d in docs[:200] for ch in d)
  assert len(splits.split(docs, "validation")) == len(docs) // 20
  resolved = corpus.resolve("pydocs")
  assert corpus.canonical_name("pydocs") == resolved.name == "pydocs"
  assert resolved.key == "pydocs_" + corpus.fingerprint(docs)
  assert corpus.documents("pydocs") == docs                 # the same every time


def test_pydocs_reads_a_modules_docstrings_in_source_order(tmp_path):
  (tmp_path / "tests").mkdir()
  (tmp_path / "tests" / "t.py").write_text('"""Left out: a test folder."""\n')
  (tmp_path / "bad.py").write_text("def (:\n")
  (tmp_path / "m.py").write_text(
      '"""The module.\n\n    Indented\n    text."""\n'
      'class A:\n  """A class \u2603 with a snowman."""\n'
      '  def f(self):\n    """A method."""\n'
      'def g():\n  pass\n'
      'def h():\n  """Last."""\n')
  assert [os.path.basename(p) for p in pydocs.python_files(str(tmp_path))] == [
      "bad.py", "m.py"]
  assert pydocs.docstring_documents(str(tmp_path)) == [
      "The module.\n\nIndented\ntext.\n\nA class  with a snowman.\n\nA method.\n\nLast."]
