"""Reading a pre-tokenized cache (:mod:`primer_mtf.data.cache` builds them):
where a task's cache lies, whether it is complete and built for this task's
vocabulary, and pointing seqio at it.

The tasks that train from a cache use this module; the Beam job that builds one
imports the tasks, so the two live apart.
"""

import json
import os

import seqio
import tensorflow.compat.v1 as tf

from primer_mtf.errors import UsageError

SPEC_FILE = "primer_mtf_cache.json"


def task_dir(cache_dir, task_name):
  """Where seqio keeps (and looks for) a task's cache under ``cache_dir``."""
  return os.path.join(cache_dir, seqio.get_task_dir_from_name(task_name))


def check(cache_dir, task_name, build_hint, vocabulary_file, vocabulary_digest):
  """The cache of ``task_name`` under ``cache_dir`` is complete and was built for
  this task and its vocabulary (``vocabulary_file``, whose pieces hash to
  ``vocabulary_digest``, None for a bucket path); one line naming the fix
  otherwise."""
  folder = task_dir(cache_dir, task_name)
  if not tf.io.gfile.exists(os.path.join(folder, "COMPLETED")):
    others = [d.rstrip("/") for d in (tf.io.gfile.listdir(cache_dir)
                                      if tf.io.gfile.isdir(cache_dir) else [])]
    held = f" (it holds {', '.join(sorted(others))})" if others else ""
    raise UsageError(f"no complete cache of task {task_name} under {cache_dir}"
                     f"{held}; build it with `{build_hint}`")
  spec_path = os.path.join(folder, SPEC_FILE)
  if not tf.io.gfile.exists(spec_path):
    raise UsageError(f"{folder} was not built by `primer-mtf cache` (no {SPEC_FILE}); "
                     f"build it with `{build_hint}`")
  with tf.io.gfile.GFile(spec_path) as f:
    built = json.load(f)
  recorded = built.get("vocabulary_pieces_sha256")
  # a bucket vocabulary is not read here: its path stands for its pieces
  built_path = built.get("spec", {}).get("lm", built.get("spec", {})).get("vocabulary")
  if (vocabulary_digest and recorded and vocabulary_digest != recorded) or (
      vocabulary_digest is None and built_path and built_path != vocabulary_file):
    raise UsageError(f"the cache {folder} was built with another vocabulary than "
                     "this run's; build it again with `" + build_hint +
                     " --overwrite`")


def use(cache_dir):
  """Makes seqio look for cached tasks in ``cache_dir`` (once)."""
  if cache_dir not in seqio.get_global_cache_dirs():
    seqio.add_global_cache_dirs([cache_dir])
