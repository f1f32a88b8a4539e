"""The train/validation split rule of every local corpus.

With n documents and stride s = min(20, n), document i goes to validation when
i % s == s - 1, else to train. So about 5% of the documents are held out, spread
evenly through the corpus, and any corpus of two or more documents has both splits.

It is its own module because the tasks built from the embedded Bible
(:mod:`primer_mtf.data.bible`) hold out the same chapters the corpus does, and the
corpus module in turn reads its documents from the Bible.
"""

SPLITS = ("train", "validation")
_MAX_STRIDE = 20


def is_validation(index, num_documents):
  """Whether document ``index`` of ``num_documents`` is held out."""
  stride = min(_MAX_STRIDE, num_documents)
  return index % stride == stride - 1


def split(docs, split_name):
  """The documents of one split, in their order."""
  if split_name not in SPLITS:
    raise ValueError(f"unknown split {split_name!r}; expected one of {SPLITS}")
  want_validation = split_name == "validation"
  n = len(docs)
  return [d for i, d in enumerate(docs) if is_validation(i, n) == want_validation]
