"""Files written whole or not at all, and logs read past a cut last line.

A run folder outlives the processes that write it: a kill, a full disk or a
partial copy can stop a write half way. Every file primer-mtf writes (records,
JSON and CSV results, PNGs) is written to a temporary file beside it and renamed
over the old one, so a reader sees the old file or the new one, never a part.
Append-only logs (``train_progress.jsonl``) cannot be renamed at each line; their
readers skip a last line that was cut short.
"""

import contextlib
import json
import os
import re

import tensorflow.compat.v1 as tf


@contextlib.contextmanager
def replaced(path, mode="w"):
  """A file object whose contents replace ``path`` when the block ends without
  an error; on an error ``path`` is as it was and no temporary file is left."""
  folder = os.path.dirname(path)
  if folder:
    tf.io.gfile.makedirs(folder)
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    with tf.io.gfile.GFile(tmp, mode) as f:
      yield f
    tf.io.gfile.rename(tmp, path, overwrite=True)
  finally:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.remove(tmp)


def write_json(path, value):
  with replaced(path) as f:
    json.dump(value, f, indent=1)
  return path


def save_figure(fig, path):
  """A matplotlib figure as a PNG, written whole."""
  with replaced(path, "wb") as f:
    fig.savefig(f, format="png", dpi=100, bbox_inches="tight")
  return path


def read_json_lines(path):
  """The records of a JSON-lines log; a last line cut short by a kill or a full
  disk is skipped (a bad line before the last is damage, and raises)."""
  with tf.io.gfile.GFile(path) as f:
    lines = f.read().split("\n")
  rows = []
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      rows.append(json.loads(line))
    except ValueError:
      if any(rest.strip() for rest in lines[i + 1:]):
        raise
  return rows


# Temporary files of writes that did not finish: TensorFlow's atomic writes
# (graph.pbtxt, .meta: NAME.tmp<uuid4 hex>, left behind when the write itself
# fails, e.g. on a full disk), its sharded saver's folder (model.ckpt-N_temp/)
# and :func:`replaced`'s (NAME.tmp-<pid>).
_TF_TEMPORARY = re.compile(r".\.tmp[0-9a-f]{32}$")
_SAVER_TEMPORARY = re.compile(r"^model\.ckpt-\d+_temp$")
_OURS = re.compile(r".\.tmp-(\d+)$")


def process_alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def remove_partial_writes(folder):
  """Removes from ``folder`` (not its subfolders) the temporary files of writes
  that did not finish, and returns their names. Call it while holding the run's
  writer lock, or after a failed command: TensorFlow's temporary files carry no
  process id, so one being written by a live process would go too. Ours are
  removed only where the process that wrote them is gone (on this host)."""
  removed = []
  if "://" in folder or not os.path.isdir(folder):
    return removed
  for name in sorted(os.listdir(folder)):
    path = os.path.join(folder, name)
    ours = _OURS.search(name)
    if ours and (int(ours.group(1)) == os.getpid() or process_alive(int(ours.group(1)))):
      continue
    if _SAVER_TEMPORARY.match(name) and os.path.isdir(path):
      tf.io.gfile.rmtree(path)
    elif (_TF_TEMPORARY.search(name) or ours) and os.path.isfile(path):
      os.remove(path)
    else:
      continue
    removed.append(name)
  return removed
