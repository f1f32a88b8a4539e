"""seqio tasks for decoder-only language modelling, named by corpus.

``corpus_task()`` is the gin entry point: gin files bind
``mesh_train_dataset_fn.mixture_or_task_name = @primer_mtf.corpus_task()``, so the
corpus, the vocabulary size and the data directory are recorded in the operative
config like every other setting. It registers the task on first use (training and
caching the SentencePiece vocabulary if needed) and returns its name.

The LM objective is the paper's: each document gets EOS, documents are concatenated
and cut into full ``targets``-length pieces, and T5's input pipeline packs them.
"""

import functools
import os

import gin
import seqio
import tensorflow.compat.v1 as tf
from t5.data import preprocessors as t5_preprocessors

from primer_mtf.data import corpus as corpus_lib
from primer_mtf.data import vocab as vocab_lib
from primer_mtf.errors import UsageError


def append_document_eos(dataset):
  """Ends every tokenized document with EOS (id 1) before concatenation."""
  def _append(ex):
    ex = dict(ex)
    ex["targets"] = tf.concat(
        [ex["targets"], tf.constant([1], ex["targets"].dtype)], axis=0)
    return ex
  return dataset.map(_append, num_parallel_calls=tf.data.experimental.AUTOTUNE)


def lm_preprocessors(text_key):
  return [
      functools.partial(t5_preprocessors.rekey, key_map={"targets": text_key}),
      seqio.preprocessors.tokenize,
      append_document_eos,
      functools.partial(t5_preprocessors.reduce_concat_tokens, batch_size=128),
      t5_preprocessors.split_tokens_to_targets_length,
  ]


def trained_vocabulary(corpus, vocab_size, cache_dir=None):
  """Path of the SentencePiece model trained on a resolved ``corpus`` (cached)."""
  return vocab_lib.cached(corpus.vocab_documents, vocab_size, corpus.key, cache_dir)


@gin.configurable("corpus_task", module="primer_mtf")
def corpus_task(corpus=corpus_lib.EMBEDDED, vocab_size=4096, vocabulary=None,
                cache_dir=None, tfds_data_dir=None):
  """Registers (once) and names the LM task of a corpus.

  Args:
    corpus: a ``--corpus`` value, see :func:`primer_mtf.data.corpus.resolve`.
    vocab_size: pieces of the SentencePiece model trained on the corpus.
    vocabulary: path of an existing SentencePiece model (for example T5's
      default vocabulary) to use instead of training one.
    cache_dir: where trained vocabularies are cached (default
      ``$PRIMER_MTF_CACHE`` or ``~/.cache/primer_mtf``).
    tfds_data_dir: TFDS data directory for the TFDS corpora.

  Returns:
    the registered task name.
  """
  resolved = corpus_lib.resolve(corpus, tfds_data_dir)
  if vocabulary:
    if not tf.io.gfile.exists(vocabulary):
      raise UsageError(f"vocabulary {vocabulary} does not exist; give a "
                       "SentencePiece .model file or leave it unset to train one")
    vocab_path = vocabulary
    vocab_name = os.path.basename(vocabulary).split(".")[0]
  else:
    vocab_path = trained_vocabulary(resolved, vocab_size, cache_dir)
    vocab_name = f"sp{vocab_size}"
  name = f"primer_mtf_lm_{resolved.key}_{vocab_name}"

  if name not in seqio.TaskRegistry.names():
    seqio.TaskRegistry.add(
        name,
        source=resolved.source,
        preprocessors=lm_preprocessors(resolved.text_field),
        output_features={"targets": seqio.Feature(
            seqio.SentencePieceVocabulary(vocab_path), add_eos=False)},
        metric_fns=[])
  return name
