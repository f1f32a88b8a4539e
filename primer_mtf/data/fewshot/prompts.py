"""k-shot prompts: k examples of the task's train split, each written as its
context and its right answer, joined by the task's separator and followed by the
query's context.

Which k examples is drawn for each query from ``(seed, query index)``, so a prompt
does not depend on the others or on ``--limit``. When shots come from the
evaluated examples themselves (a JSONL task with no train file), a query is never
its own shot.
"""

import numpy as np

from primer_mtf.data.fewshot.task import DEFAULT_SEPARATOR
from primer_mtf.errors import UsageError


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
  """A query's prompt: its shots (``prefix``, possibly empty), then its context."""
  return f"{prefix}{separator}{context}" if prefix else context


def prompts(examples, pool, shots, seed, separator=DEFAULT_SEPARATOR,
            same_pool=False):
  """The k-shot context of every example: its shots, then its own context."""
  prefixes = shot_prefixes(examples, pool, shots, seed, separator, same_pool)
  return [with_query(p, ex.context, separator) for p, ex in zip(prefixes, examples)]
