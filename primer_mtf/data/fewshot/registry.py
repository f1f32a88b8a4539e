"""Which task a ``--task`` value names.

The shipped tasks are listed in one table, by name, each with the function that
builds it; a group name (``super_glue``) stands for several of them. Any other
value that looks like a file is a user's JSONL task
(:mod:`primer_mtf.data.fewshot.jsonl`). Nothing is inferred from a name's prefix:
a name that is neither registered nor a file is refused with the known names.
"""

import collections
import functools
import os

from primer_mtf.data.fewshot import jsonl
from primer_mtf.data.fewshot import kjv
from primer_mtf.data.fewshot import super_glue
from primer_mtf.errors import UsageError

# name -> function of --tfds_data_dir returning the Task (only SuperGLUE reads it)
SHIPPED = {
    "kjv_ending": lambda tfds_data_dir: kjv.ENDING,
    "kjv_last_word": lambda tfds_data_dir: kjv.LAST_WORD,
    **{f"super_glue/{name}": functools.partial(super_glue.task, name)
       for name in super_glue.TASKS},
}

# a --task value that stands for several shipped tasks
GROUPS = {"super_glue": [f"super_glue/{name}" for name in super_glue.TASKS]}


def task_names():
  """The shipped tasks' names, in the order ``score`` lists them."""
  return list(SHIPPED)


def is_task_file(name):
  """Whether ``--task name`` names a JSONL file rather than a shipped task."""
  reserved = name in SHIPPED or any(name == g or name.startswith(g + "/")
                                    for g in GROUPS)
  return not reserved and (name.endswith((".jsonl", ".json"))
                           or os.path.sep in name or os.path.exists(name))


def get(name, tfds_data_dir=None, train_file=None):
  """The task called ``name``: a shipped one or a JSONL file."""
  if name in SHIPPED:
    return SHIPPED[name](tfds_data_dir)
  if is_task_file(name):
    return jsonl.task(name, train_file)
  raise UsageError(f"unknown --task {name!r}; give a JSONL file or one of: "
                   f"{', '.join(task_names())} ({' or '.join(GROUPS)} runs them "
                   "all)")


def expand(names):
  """Task names with each group name replaced by its tasks, duplicates dropped."""
  out = []
  for n in names:
    out += GROUPS.get(n, [n])
  return list(collections.OrderedDict.fromkeys(out))
