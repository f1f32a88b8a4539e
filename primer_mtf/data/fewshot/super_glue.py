"""SuperGLUE as few-shot tasks (``super_glue/NAME``): the ones the paper reports
one-shot, read from prepared TFDS data (``--tfds_data_dir``), every one rank
classification.

Each adapter turns one TFDS row into examples with GPT-3's prompt (Brown et al.,
2020, appendix G). Data that is not prepared raises
:class:`~primer_mtf.errors.DataNotPrepared`, which ``score`` reports as one line
and skips.
"""

import functools
import os

import numpy as np

from primer_mtf.data.fewshot.task import Example, RANK, Task
from primer_mtf.errors import DataNotPrepared

VERSION = "1.0.2"


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


TASKS = {
    # task: (TFDS config, row -> rank-classification examples)
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


def builder(config, data_dir):
  """The prepared TFDS builder of a SuperGLUE config.

  The prepared files are looked for first, so a missing dataset is reported
  without TFDS looking anywhere else for it."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  name = f"super_glue/{config}:{VERSION}"
  where = os.path.expanduser(data_dir or tfds.core.constants.DATA_DIR)
  info = os.path.join(where, "super_glue", config, VERSION, "dataset_info.json")
  if not tf.io.gfile.exists(info):
    raise DataNotPrepared(f"TFDS dataset {name} is not prepared under {where}; "
                          f"build it with `tfds build {name}` or pass "
                          "--tfds_data_dir")
  return tfds.builder(name, data_dir=where)


def load(task, split, data_dir):
  """The examples of SuperGLUE task ``task`` (a key of :data:`TASKS`)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config, convert = TASKS[task]
  rows = builder(config, data_dir).as_dataset(split=split, shuffle_files=False)
  examples = []
  for ex in tfds.as_numpy(rows):
    examples += convert({k: _text(v) for k, v in ex.items()})
  return examples


def task(name, data_dir=None):
  """The task ``super_glue/NAME``; its data is read (and checked) when loaded."""
  return Task(f"super_glue/{name}", RANK,
              functools.partial(load, name, data_dir=data_dir))
