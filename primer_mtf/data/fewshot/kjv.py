"""The shipped few-shot tasks, built from the embedded King James Bible
(:mod:`primer_mtf.data.bible`, no download).

Their queries are verses of the validation chapters, which training never reads;
their shots are verses of the training chapters.
  * ``kjv_ending``: the first part of a verse, cut at the clause mark (, ; :)
    nearest its middle; choose its true ending among four, the other three being
    endings of verses from other books. Chance 25%. Ranked by ``pmi``: an
    ending's own likelihood (short, common phrases) otherwise outweighs its fit
    to the context for a small model.
  * ``kjv_last_word``: a verse without its last word; generate the word (exact
    match, final punctuation left out).
"""

import functools
import re

import numpy as np

from primer_mtf.data import bible
from primer_mtf.data.fewshot.task import Example, GENERATE, RANK, Task

KJV_TASK_SEED = 20210917   # fixes the distractors and the answer positions
_CLAUSE_MARKS = (",", ";", ":")
_MIN_PART_WORDS = 3
_MAX_VERSE_WORDS = 30      # keeps one-shot prompts within a tiny model's 128 tokens
_CHOICES = 4


def split_at_clause(text):
  """(first part, ending) cut after the clause mark nearest the middle, each part
  at least three words; None where there is no such mark or the verse is long."""
  words = text.split()
  if len(words) > _MAX_VERSE_WORDS:
    return None
  cuts = [i + 1 for i, w in enumerate(words)
          if w.endswith(_CLAUSE_MARKS)
          and _MIN_PART_WORDS <= i + 1 <= len(words) - _MIN_PART_WORDS]
  if not cuts:
    return None
  cut = min(cuts, key=lambda c: (abs(c - len(words) / 2), c))
  return " ".join(words[:cut]), " ".join(words[cut:])


@functools.lru_cache(maxsize=None)
def kjv_ending(split):
  """The ``kjv_ending`` examples of a split (deterministic)."""
  items = []
  for book, citation, text in bible.split_verses(split):
    parts = split_at_clause(text)
    if parts:
      items.append((book, citation, *parts))
  rng = np.random.default_rng(KJV_TASK_SEED)
  examples = []
  for book, citation, context, ending in items:
    distractors = []
    while len(distractors) < _CHOICES - 1:  # endings of verses of other books
      other_book, _, _, candidate = items[int(rng.integers(len(items)))]
      if (other_book != book and candidate != ending
          and candidate not in distractors):
        distractors.append(candidate)
    label = int(rng.integers(_CHOICES))
    choices = distractors[:label] + [ending] + distractors[label:]
    examples.append(Example(context=context, choices=tuple(choices), label=label,
                            source=citation))
  return examples


@functools.lru_cache(maxsize=None)
def kjv_last_word(split):
  """The ``kjv_last_word`` examples of a split: a verse of at most 30 words
  without its last word; the answer is that word without final punctuation."""
  examples = []
  for _, citation, text in bible.split_verses(split):
    words = text.split()
    if not _MIN_PART_WORDS < len(words) <= _MAX_VERSE_WORDS:
      continue
    answer = re.sub(r"[^\w']+$", "", words[-1])
    if answer:
      examples.append(Example(context=" ".join(words[:-1]), answer=answer,
                              source=citation))
  return examples


ENDING = Task("kjv_ending", RANK, kjv_ending, normalize="pmi")
LAST_WORD = Task("kjv_last_word", GENERATE, kjv_last_word)
