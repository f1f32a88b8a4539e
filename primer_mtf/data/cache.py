"""Pre-tokenized caches of the project's seqio tasks, built by seqio's Beam job.

Why: on a multi-host TPU slice, TPUEstimator feeds the mesh in BROADCAST mode, so
the ``tf.data`` pipeline runs on the TPU runtime server of worker 0, and that
server has no tensorflow_text ops: tokenizing there fails with "Op type not
registered 'SentencepieceOp'" (T5's issue #965). T5's answer, used here: tokenize
once with seqio's cache job (Apache Beam: DirectRunner on one machine, Dataflow for
C4) and train with ``mesh_train_dataset_fn.use_cached = True``, a pipeline of core
TensorFlow ops only.

Every task here has a ``seqio.CacheDatasetPlaceholder`` right after tokenization,
so a cache holds tokenized documents and every objective's sequence-length
dependent steps (concatenation, splitting, chunks, span corruption) run after it.
Beside seqio's own files, each cached task folder holds ``SPEC_FILE``: the
task's registration and the hash of its vocabulary, which training checks
(:mod:`primer_mtf.data.cache_check`, apart so that the tasks that read a cache do
not import the job that builds it).
"""

import functools
import os
import time

import seqio
import tensorflow.compat.v1 as tf

# the folder layout and the spec file, shared with the side that reads a cache
from primer_mtf import files
from primer_mtf.data.cache_check import SPEC_FILE, task_dir
from primer_mtf.errors import UsageError

MIN_SHARDS = 64   # seqio's default: many shards shuffle better when read back


def lm_spec(corpus, vocab_size=4096, vocabulary=None, tfds_data_dir=None,
            extra_ids=0, objective="eos_per_document"):
  """The ``corpus_task`` arguments of an LM task: all a Beam worker needs."""
  return {"kind": "lm", "corpus": corpus, "vocab_size": vocab_size,
          "vocabulary": vocabulary, "tfds_data_dir": tfds_data_dir,
          "extra_ids": extra_ids, "objective": objective}


def text2text_spec(task, lm):
  """A fine-tuning task (a ``--task`` value) on the vocabulary of ``lm``."""
  return {"kind": "text2text", "task": task, "lm": lm}


def register(spec):
  """Registers the task of ``spec`` in this process (once) and names it. Runs on
  every Beam worker as ``PreprocessTask``'s setup_fn, so Dataflow workers need
  only the installed package, not the registering process."""
  import primer_mtf  # pylint: disable=g-import-not-at-top
  primer_mtf.load()
  from primer_mtf.data import tasks  # pylint: disable=g-import-not-at-top
  from primer_mtf.data import text2text  # pylint: disable=g-import-not-at-top
  if spec["kind"] == "lm":
    kwargs = {k: v for k, v in spec.items() if k != "kind"}
    return tasks.corpus_task(**kwargs)
  lm_task = seqio.get_mixture_or_task(register(spec["lm"]))
  return text2text.register(spec["task"],
                            lm_task.output_features["targets"].vocabulary)


def add_pipeline(pipeline, spec, name, cache_dir, min_shards=MIN_SHARDS,
                 tfds_data_dir=None):
  """Adds seqio's cache job for the task ``name``, registered from ``spec``, to a
  Beam pipeline.

  This is ``seqio.scripts.cache_tasks_main.run_pipeline`` for one task, built
  from the same ``seqio.beam_utils`` transforms, with one difference: the task's
  registration is shipped to the workers as ``PreprocessTask``'s ``setup_fn``
  (``cache_tasks_main`` can only import a module, which cannot carry a corpus and
  a vocabulary). Returns the task's output folder.
  """
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  from seqio import beam_utils  # pylint: disable=g-import-not-at-top
  task = seqio.get_mixture_or_task(name)
  output_dir = task_dir(cache_dir, name)
  completions = []
  for split in task.splits:
    label = f"{name}_{split}"
    pat = beam_utils.PreprocessTask(task, split, setup_fn=functools.partial(
        register, spec), tfds_data_dir=tfds_data_dir)
    examples = (pipeline
                | f"{label}_pat" >> pat
                # seqio: this reshuffle also shuffles the examples globally
                | f"{label}_global_example_shuffle" >> beam.Reshuffle())
    num_shards = max(len(pat.shards), min_shards)
    completions.append(
        examples | f"{label}_write_tfrecord" >> beam_utils.WriteExampleTfRecord(
            seqio.get_cached_tfrecord_prefix(output_dir, split),
            num_shards=num_shards))
    completions.append(
        examples | f"{label}_info" >> beam_utils.GetInfo(num_shards)
        | f"{label}_write_info" >> beam_utils.WriteJson(
            seqio.get_cached_info_path(output_dir, split)))
    completions.append(
        examples | f"{label}_stats" >> beam_utils.GetStats(task.output_features)
        | f"{label}_write_stats" >> beam_utils.WriteJson(
            seqio.get_cached_stats_path(output_dir, split)))
  _ = (completions
       | f"{name}_flatten" >> beam.Flatten()
       | f"{name}_discard" >> beam.Filter(lambda _: False)
       | f"{name}_write_completed" >> beam.io.textio.WriteToText(
           os.path.join(output_dir, "COMPLETED"), append_trailing_newlines=False,
           num_shards=1, shard_name_template="", header=""))
  return output_dir


def build(spec, name, cache_dir, pipeline_args=("--runner=DirectRunner",),
          min_shards=MIN_SHARDS, tfds_data_dir=None, overwrite=False):
  """Runs the cache job of the task ``name`` (``register(spec)``); returns (task
  folder, seconds). An existing complete cache of the task is kept unless
  ``overwrite``."""
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  from primer_mtf.data import tasks  # pylint: disable=g-import-not-at-top
  output_dir = task_dir(cache_dir, name)
  check_absent(cache_dir, name, overwrite)
  if tf.io.gfile.exists(output_dir):   # an older cache, or a job that died
    tf.io.gfile.rmtree(output_dir)
  tf.io.gfile.makedirs(output_dir)
  files.write_json(os.path.join(output_dir, SPEC_FILE),
                   {"spec": spec, "task": name,
                    "vocabulary_pieces_sha256": tasks.vocabulary_digest(name)})
  start = time.time()
  options = beam.options.pipeline_options.PipelineOptions(list(pipeline_args))
  with beam.Pipeline(options=options) as pipeline:
    add_pipeline(pipeline, spec, name, cache_dir, min_shards, tfds_data_dir)
  return output_dir, time.time() - start


def check_absent(cache_dir, name, overwrite=False):
  """A complete cache is never rebuilt by accident."""
  output_dir = task_dir(cache_dir, name)
  if not overwrite and tf.io.gfile.exists(os.path.join(output_dir, "COMPLETED")):
    raise UsageError(f"{output_dir} already holds a complete cache of {name}; "
                     "train from it, or pass --overwrite to build it again")


def size_bytes(folder):
  """Bytes of the files directly in ``folder`` (a cache is flat)."""
  return sum(tf.io.gfile.stat(os.path.join(folder, f)).length
             for f in tf.io.gfile.listdir(folder))
