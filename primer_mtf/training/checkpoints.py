"""Whether a checkpoint holds the model the parsed configuration builds: the same
weights, by name and shape, none missing and none left over.

Resuming a run, evaluating it and fine-tuning from it all restore a checkpoint into
the model the gin configuration describes. mesh-tensorflow would fail deep in the
restore with a shape traceback (after writing the new graph and config), or, where
names differ, leave a variable at its initialiser. So each of them first compares
the model's variables, built without values, with the checkpoint's, and stops with
one line before anything is written.
"""

import tensorflow.compat.v1 as tf

from primer_mtf.errors import UsageError
from primer_mtf.planning import model_graph
from primer_mtf.training import divergence


NOT_WEIGHTS = ("global_step", divergence.SKIPPED_STEPS)  # training state


def step_of(path):
  """The global step in a checkpoint path ``.../model.ckpt-N``."""
  return int(path.rsplit("-", 1)[1])


def check_matches(checkpoint, vocab_size, what, fix):
  """Every variable of the configured model is in ``checkpoint``, with its shape.

  ``what`` names the checkpoint in the message and ``fix`` says what to do, e.g.
  ``check_matches(path, 4096, "run/ holds another model", "use a new --model_dir")``.
  """
  have = dict(tf.train.list_variables(checkpoint))
  built = model_graph.build(vocab_size, batch=2, length=8)
  names = {v.name for v in built.variables}
  extra = sorted(n for n in have if n not in names and n not in NOT_WEIGHTS
                 and "_slot_" not in n)   # optimizer slots follow the weights
  if extra:
    raise UsageError(f"{what}: {checkpoint} has a weight this configuration does "
                     f"not build, {extra[0]}; {fix}")
  for v in built.variables:
    shape = have.get(v.name)
    if shape is None:
      raise UsageError(f"{what}: {checkpoint} has no variable {v.name}; {fix}")
    if list(shape) != v.shape.to_integer_list:
      raise UsageError(f"{what}: {v.name} is {list(shape)} in {checkpoint}, "
                       f"{v.shape.to_integer_list} in this configuration; {fix}")
