"""The embedded corpus, the local-text rules and the train/validation split."""
import pytest

from primer_mtf.data import corpus
from primer_mtf.errors import UsageError


def test_kjv_is_one_document_per_chapter():
  docs = corpus.kjv_documents()
  assert len(docs) == 1189  # chapters of the King James Bible
  assert docs[0].startswith("In the beginning God created the heaven and the earth.")
  assert docs[-1].endswith("The grace of our Lord Jesus Christ be with you all. Amen.")


def test_split_is_deterministic_disjoint_and_complete():
  docs = [f"doc {i}" for i in range(103)]
  train, val = corpus.split(docs, "train"), corpus.split(docs, "validation")
  assert sorted(train + val) == sorted(docs)
  assert not set(train) & set(val)
  assert val == [f"doc {i}" for i in range(19, 103, 20)]
  assert corpus.split(docs, "validation") == val


@pytest.mark.parametrize("n", [2, 3, 7, 19, 20, 21])
def test_every_corpus_of_two_documents_has_both_splits(n):
  docs = [str(i) for i in range(n)]
  assert corpus.split(docs, "train") and corpus.split(docs, "validation")


def test_kjv_validation_is_about_five_percent():
  docs = corpus.kjv_documents()
  assert len(corpus.split(docs, "validation")) == 1189 // 20


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
