"""How often ``make_layer_stack`` repeats a pattern of several layer pairs.

``make_layer_stack`` repeats its ``layers`` list ``num_layers`` times, and the
sizes count ``num_layers`` in (attention, feed-forward) pairs. A model whose list
holds a longer pattern (Switch: a dense pair, then a sparse pair; the Evolved
Transformer: a block that stands for two pairs) binds
``make_layer_stack.num_layers = @primer_mtf.pattern_repeats()`` so that every size
file still means what it says, with one line for a size it does not divide.
"""

import gin


@gin.configurable(module="primer_mtf")
def pattern_repeats(num_layers=gin.REQUIRED, pairs_per_pattern=2, extra=0):
  """num_layers / pairs_per_pattern, plus ``extra`` repeats.

  Args:
    num_layers: the size's number of (attention, feed-forward) pairs.
    pairs_per_pattern: how many of those pairs one pattern stands for.
    extra: patterns added on top (the Evolved Transformer's parameter match).
  """
  if num_layers % pairs_per_pattern:
    raise ValueError(
        f"num_layers = {num_layers} is not a multiple of the model's pattern of "
        f"{pairs_per_pattern} layer pairs; choose a size whose num_layers is")
  return num_layers // pairs_per_pattern + extra
