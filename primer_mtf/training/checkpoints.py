"""Whether a checkpoint holds the model the parsed configuration builds: the same
weights, by name and shape, none missing and none left over.

Resuming a run, evaluating it and fine-tuning from it all restore a checkpoint into
the model the gin configuration describes. mesh-tensorflow would fail deep in the
restore with a shape traceback (after writing the new graph and config), or, where
names differ, leave a variable at its initialiser. So each of them first compares
the model's variables, built without values, with the checkpoint's, and stops with
one line before anything is written.
"""

import math
import os

import tensorflow.compat.v1 as tf

from primer_mtf.errors import UsageError
from primer_mtf.planning import model_graph
from primer_mtf.training import divergence


NOT_WEIGHTS = ("global_step", divergence.SKIPPED_STEPS)  # training state


PREFIX = "model.ckpt"


def step_of(path):
  """The global step in a checkpoint path ``.../model.ckpt-N``."""
  return int(path.rsplit("-", 1)[1])


def steps(model_dir):
  """Steps of every checkpoint in ``model_dir``, step 0 included, oldest first.

  (``eval_checkpoint_step = "all"`` of mesh-tensorflow skips step 0, the untrained
  model, which is the reference point of a learning curve.)
  """
  paths = tf.io.gfile.glob(os.path.join(model_dir, f"{PREFIX}-*.index"))
  return sorted(step_of(p[:-len(".index")]) for p in paths)


def path(model_dir, step):
  return os.path.join(model_dir, f"{PREFIX}-{step}")


def damage(path):
  """Why checkpoint ``path`` cannot be restored, or None if it is whole.

  Checked against its index without reading the weights: the index opens, every
  data shard it names exists, and the shards hold exactly the bytes of the
  tensors it lists (a copy or a write cut short holds fewer).
  """
  try:
    reader = tf.train.load_checkpoint(path)
  except (tf.errors.OpError, ValueError) as e:
    return f"its index cannot be read ({str(e).splitlines()[0][:80]})"
  shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
  if any(d == tf.string for d in dtypes.values()):
    return None   # variable-length: the index alone does not give the size
  expected = sum(math.prod(shapes[k]) * dtypes[k].size for k in shapes)
  shards = tf.io.gfile.glob(f"{path}.data-*-of-*")
  if not shards:
    return "it has no data shard"
  total = int(shards[0].rsplit("-of-", 1)[1])
  if len(shards) != total:
    return f"{total - len(shards)} of its {total} data shards are missing"
  held = sum(tf.io.gfile.stat(f).length for f in shards)
  if held != expected:
    return f"its data holds {held:,} bytes of the {expected:,} its index lists"
  return None


def newest_intact(model_dir):
  """(path of the newest whole checkpoint or None, [(path, why) of the damaged
  ones newer than it])."""
  damaged = []
  for step in reversed(steps(model_dir)):
    why = damage(path(model_dir, step))
    if why is None:
      return path(model_dir, step), damaged
    damaged.append((path(model_dir, step), why))
  return None, damaged


DAMAGED_DIR = "damaged"


def set_aside(model_dir, damaged, intact):
  """Moves damaged checkpoints' files into ``damaged/`` and points the
  checkpoint state at ``intact``, so training resumes from it."""
  folder = os.path.join(model_dir, DAMAGED_DIR)
  tf.io.gfile.makedirs(folder)
  for ckpt, _ in damaged:
    for f in tf.io.gfile.glob(ckpt + ".*"):
      tf.io.gfile.rename(f, os.path.join(folder, os.path.basename(f)), overwrite=True)
  kept = [path(model_dir, s) for s in steps(model_dir)]
  if intact:
    tf.train.update_checkpoint_state(model_dir, intact,
                                     all_model_checkpoint_paths=kept)
  elif tf.io.gfile.exists(os.path.join(model_dir, "checkpoint")):
    tf.io.gfile.remove(os.path.join(model_dir, "checkpoint"))


def choose(model_dir, step=None):
  """(path, step) of checkpoint ``step``, or of the newest; one line if none."""
  found = steps(model_dir)
  if not found:
    raise UsageError(f"{model_dir} has no checkpoint; train first")
  if step is None:
    step = found[-1]
  elif step not in found:
    raise UsageError(f"{model_dir} has no checkpoint at step {step}; it has steps "
                     f"{', '.join(map(str, found))}")
  why = damage(path(model_dir, step))
  if why:
    intact = [s for s in found if s != step and not damage(path(model_dir, s))]
    hint = (f"choose another with --checkpoint_step (whole: "
            f"{', '.join(map(str, intact[-3:]))})" if intact else
            "it has no whole checkpoint")
    raise UsageError(f"{path(model_dir, step)} is damaged: {why}; {hint}")
  return path(model_dir, step), step


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
