"""Corpus ingestion under random input: random bytes, random encodings and random
file trees. Each either reads every document, exactly, or stops with one
UsageError; nothing else escapes, and no document is silently lost."""
import os
import shutil
import tempfile

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # pylint: disable=g-import-not-at-top,wrong-import-position

from primer_mtf.data import corpus  # pylint: disable=wrong-import-position
from primer_mtf.data import splits  # pylint: disable=wrong-import-position
from primer_mtf.errors import UsageError  # pylint: disable=wrong-import-position

FUZZ = settings(max_examples=80, deadline=None, derandomize=True)
ENCODINGS = ("utf-8", "utf-16", "latin-1", "cp1252", "utf-32", "ascii")


def _expected_lines(data):
  """What a text file's documents must be, or None where it must be refused."""
  if b"\x00" in data:
    return None
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError:
    return None
  return [line.strip() for line in text.splitlines() if line.strip()]


def _read(path):
  """(documents, None) or (None, the UsageError's message)."""
  try:
    return corpus.documents(path), None
  except UsageError as e:
    assert "\n" not in str(e)
    return None, str(e)


def _check_file(data):
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "c.txt")
    with open(path, "wb") as f:
      f.write(data)
    docs, error = _read(path)
  want = _expected_lines(data)
  if want is None or len(want) < 2:
    assert docs is None and error, (data, docs)
  else:
    assert docs == want, (data, docs)
    assert sorted(splits.split(docs, "train") + splits.split(docs, "validation")) == \
        sorted(docs)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_are_read_whole_or_refused(data):
  _check_file(data)


@FUZZ
@given(st.lists(st.text(max_size=40), max_size=12), st.sampled_from(ENCODINGS),
       st.sampled_from(["\n", "\r\n", "\r", "\u2028"]))
def test_random_text_in_random_encodings(lines, encoding, newline):
  try:
    data = newline.join(lines).encode(encoding)
  except UnicodeEncodeError:
    return
  _check_file(data)


_names = st.text(alphabet="abc.é_ ", min_size=1, max_size=6).filter(
    lambda n: n not in (".", ".."))
_trees = st.recursive(
    st.binary(max_size=60),
    lambda children: st.dictionaries(_names, children, min_size=1, max_size=4),
    max_leaves=10)


def _write(folder, tree):
  for name, node in tree.items():
    path = os.path.join(folder, name)
    if isinstance(node, dict):
      os.makedirs(path)
      _write(path, node)
    else:
      with open(path, "wb") as f:
        f.write(node)


def _expected_files(tree, prefix=""):
  """(path, bytes) of every non-hidden file, in sorted relative-path order."""
  out = []
  for name, node in tree.items():
    if name.startswith("."):
      continue
    if isinstance(node, dict):
      out += _expected_files(node, prefix + name + "/")
    else:
      out.append((prefix + name, node))
  return sorted(out)


@FUZZ
@given(st.dictionaries(_names, _trees, min_size=1, max_size=4))
@hypothesis.example({"b": b"second", "a": {"x": b"first"}, "a.b": b"then"})
def test_random_file_trees(tree):
  tmp = tempfile.mkdtemp()
  try:
    root = os.path.join(tmp, "corpus")
    os.makedirs(root)
    _write(root, tree)
    docs, error = _read(root)
  finally:
    shutil.rmtree(tmp)
  files = _expected_files(tree)
  texts = []
  for _, data in files:
    lines = _expected_lines(data)
    if lines is None:      # a file that is not UTF-8 text refuses the corpus
      assert docs is None and error, (tree, docs)
      return
    texts.append(data.decode("utf-8").strip())
  want = [t for t in texts if t]
  if len(want) < 2:
    assert docs is None and error, (tree, docs)
  else:
    assert docs == want, (tree, docs)
