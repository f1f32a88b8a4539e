"""Few-shot tasks for ``primer-mtf score``, by where they come from.

Modules:
  * :mod:`.task`: an example, its two kinds (rank classification, exact match),
    and a task;
  * :mod:`.prompts`: k-shot prompts;
  * :mod:`.kjv`: the shipped tasks built from the embedded Bible;
  * :mod:`.super_glue`: SuperGLUE through prepared TFDS data;
  * :mod:`.jsonl`: a user's own task in a JSONL file;
  * :mod:`.registry`: which task a ``--task`` value names.

The names below are re-exported so that callers need only this package.
"""

from primer_mtf.data.bible import split_verses as kjv_split_verses
from primer_mtf.data.fewshot.kjv import kjv_ending, kjv_last_word, split_at_clause
from primer_mtf.data.fewshot.prompts import (join, prompts, shot_indices,
                                             shot_prefixes, with_query)
from primer_mtf.data.fewshot.registry import expand, get, is_task_file, task_names
from primer_mtf.data.fewshot.super_glue import TASKS as SUPER_GLUE
from primer_mtf.data.fewshot.task import (DEFAULT_SEPARATOR, GENERATE,
                                          NORMALIZATIONS, RANK, Example, Task)
