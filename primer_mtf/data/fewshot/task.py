"""What a few-shot task is: its examples, of one of two kinds, and a name.

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
"""

import dataclasses
from typing import Callable, List, Optional, Union

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
