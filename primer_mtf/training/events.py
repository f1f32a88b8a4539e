"""The graph goes into a run's first TensorBoard events file only.

Every training start opens a new events file, and TensorFlow writes the whole
graph into it three times: the summary writer's constructor adds it, and
``CheckpointSaverHook`` adds it and its meta graph again (about 22 MB for the tiny
model). A run restarted after each kill would grow by that much a start. The
graph does not change on a resume (``runs.check_resume`` refuses any change that
would), so TensorBoard's copy from the first start serves them all.

``graph_written_once(model_dir)`` wraps a training call: when ``model_dir`` already
holds an events file, the writer that the estimator's hooks share for it (one per
directory, from ``SummaryWriterCache``) is one that keeps scalars and drops graphs.

It is an explicit step, not a patch: TensorFlow has no public way to choose the
writer its hooks share, so the context manager puts one entry in the private
``FileWriterCache._cache`` for ``model_dir`` only, and on exit takes it out and
puts back what was there. Importing this module changes nothing.
"""

import contextlib
import os

import tensorflow.compat.v1 as tf
from tensorflow.python.summary.writer import writer_cache

EVENTS_GLOB = "events.out.tfevents.*"


class ScalarsOnlyFileWriter(tf.summary.FileWriter):
  """A ``FileWriter`` that drops graphs and meta graphs."""

  def add_graph(self, graph, global_step=None, graph_def=None):
    del graph, global_step, graph_def

  def add_meta_graph(self, meta_graph_def, global_step=None):
    del meta_graph_def, global_step


def has_events(model_dir):
  return bool(tf.io.gfile.glob(os.path.join(model_dir, EVENTS_GLOB)))


@contextlib.contextmanager
def graph_written_once(model_dir):
  """Within it, training in ``model_dir`` writes no graph if an earlier start did."""
  if not has_events(model_dir):
    yield
    return
  cache = writer_cache.FileWriterCache
  with tf.Graph().as_default():  # a v1 FileWriter is refused in eager mode
    writer = ScalarsOnlyFileWriter(model_dir)
  with cache._lock:  # pylint: disable=protected-access
    previous = cache._cache.get(model_dir)  # pylint: disable=protected-access
    cache._cache[model_dir] = writer  # pylint: disable=protected-access
  try:
    yield
  finally:
    with cache._lock:  # pylint: disable=protected-access
      if cache._cache.get(model_dir) is writer:  # pylint: disable=protected-access
        del cache._cache[model_dir]  # pylint: disable=protected-access
      if previous is not None:
        cache._cache[model_dir] = previous  # pylint: disable=protected-access
    writer.close()
