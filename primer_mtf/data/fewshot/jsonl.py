"""A user's own few-shot task: a JSONL file of examples, all of one kind.

One object a line: ``{"context": ..., "choices": [...], "label": i}`` (rank
classification; ``label`` may be a list when several choices are right) or
``{"context": ..., "answer": ...}`` (exact match). Other keys are ignored. A bad
line is reported as one line naming the file and the line number. Shots come from
``--train_file`` when given, else from the file itself.
"""

import json
import os
import re

from primer_mtf.data.fewshot.task import Example, Task
from primer_mtf.errors import UsageError


def _bad(path, number, what):
  return UsageError(f"{path}:{number}: {what}")


def parse_line(path, number, line):
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


def _text(path):
  """The file's text; one line naming the line of a byte that is not UTF-8."""
  with open(path, "rb") as f:
    data = f.read()
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise _bad(path, data[:e.start].count(b"\n") + 1,
               f"not UTF-8 text (bad byte at offset {e.start}); save the file "
               "as UTF-8") from None


def read(path):
  """The examples of a JSONL task file, all of one kind."""
  if not os.path.isfile(path):
    raise UsageError(f"task file {path} does not exist")
  examples, first = [], None
  for number, line in enumerate(_text(path).split("\n"), start=1):
    if not line.strip():
      continue
    ex = parse_line(path, number, line)
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


def task(path, train_file=None):
  """The task of a JSONL file, named after it; shots from ``train_file`` if given."""
  examples = read(path)
  train = read(train_file) if train_file else None
  if train and train[0].kind != examples[0].kind:
    raise UsageError(f"{train_file} holds {train[0].kind} examples but {path} "
                     f"holds {examples[0].kind} ones")
  name = re.sub(r"\.jsonl?$", "", os.path.basename(path))
  return Task(name=name, kind=examples[0].kind,
              load=lambda split: train if split == "train" and train else examples,
              same_pool=train is None)
