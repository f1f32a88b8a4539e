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
import tensorflow_datasets as tfds
from t5.data import preprocessors as t5_preprocessors

from primer_mtf.data import corpus as corpus_lib
from primer_mtf.data import vocab as vocab_lib
from primer_mtf.errors import UsageError

# name -> (tfds name, split mapping, text feature). Versions are the paper's.
TFDS_CORPORA = {
    "c4": ("c4/en:3.0.1", {"train": "train", "validation": "validation"}, "text"),
    # LM1B's validation is the last 2% of train, as in the paper.
    "lm1b": ("lm1b:1.1.0", {"train": "train[:98%]", "validation": "train[98%:]"},
             "text"),
    "pg19": ("pg19:0.1.1", {"train": "train", "validation": "validation"},
             "book_text"),
}
_VOCAB_SAMPLE_DOCS = 20000


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


def _documents_source(docs):
  def dataset_fn(split, shuffle_files, seed=None):
    del shuffle_files, seed  # one in-memory shard; seqio shuffles examples
    return tf.data.Dataset.from_tensor_slices(
        {"text": tf.constant(corpus_lib.split(docs, split), tf.string)})
  return seqio.FunctionDataSource(dataset_fn, splits=corpus_lib.SPLITS)


def _tfds_builder(name, data_dir):
  tfds_name = TFDS_CORPORA[name][0]
  builder = tfds.builder(tfds_name, data_dir=data_dir)
  info_file = os.path.join(builder.data_dir, "dataset_info.json")
  if not tf.io.gfile.exists(info_file):
    raise UsageError(f"TFDS dataset {tfds_name} is not prepared under "
                     f"{data_dir or tfds.core.constants.DATA_DIR}; build it with "
                     f"`tfds build {tfds_name}` or pass --tfds_data_dir")
  return builder


def _tfds_vocab_sample(name, data_dir):
  tfds_name, splits, key = TFDS_CORPORA[name]
  ds = tfds.load(tfds_name, split=splits["train"], data_dir=data_dir)
  for ex in tfds.as_numpy(ds.take(_VOCAB_SAMPLE_DOCS)):
    yield ex[key].decode("utf-8")


def task_name(corpus, vocab_size):
  return f"primer_mtf_lm_{corpus}_sp{vocab_size}"


def corpus_key(corpus, docs=None):
  """The name a corpus goes by in task names and the vocabulary cache."""
  if corpus in TFDS_CORPORA or corpus == corpus_lib.EMBEDDED:
    return corpus
  return "local_" + corpus_lib.fingerprint(docs)


def trained_vocabulary(corpus, vocab_size, cache_dir=None, tfds_data_dir=None,
                       docs=None):
  """Path of the SentencePiece model trained on ``corpus`` (cached).

  ``docs``: the corpus's documents where the caller has read them already.
  """
  if corpus in TFDS_CORPORA:
    _tfds_builder(corpus, tfds_data_dir)
    docs = list(_tfds_vocab_sample(corpus, tfds_data_dir))
  elif docs is None:
    docs = corpus_lib.documents(corpus)
  return vocab_lib.cached(docs, vocab_size, corpus_key(corpus, docs), cache_dir)


@gin.configurable("corpus_task", module="primer_mtf")
def corpus_task(corpus=corpus_lib.EMBEDDED, vocab_size=4096, vocabulary=None,
                cache_dir=None, tfds_data_dir=None):
  """Registers (once) and names the LM task of a corpus.

  Args:
    corpus: ``kjv`` (embedded), a local text file or folder, or one of
      ``c4``, ``lm1b``, ``pg19`` (prepared TFDS data).
    vocab_size: pieces of the SentencePiece model trained on the corpus.
    vocabulary: path of an existing SentencePiece model (for example T5's
      default vocabulary) to use instead of training one.
    cache_dir: where trained vocabularies are cached (default
      ``$PRIMER_MTF_CACHE`` or ``~/.cache/primer_mtf``).
    tfds_data_dir: TFDS data directory for the TFDS corpora.

  Returns:
    the registered task name.
  """
  if corpus in TFDS_CORPORA:
    tfds_name, splits, key = TFDS_CORPORA[corpus]
    _tfds_builder(corpus, tfds_data_dir)
    source = seqio.TfdsDataSource(tfds_name=tfds_name, splits=splits,
                                  tfds_data_dir=tfds_data_dir)
    key_name = corpus_key(corpus)
  else:
    docs = corpus_lib.documents(corpus)
    source = _documents_source(docs)
    key = "text"
    key_name = corpus_key(corpus, docs)

  if vocabulary:
    if not tf.io.gfile.exists(vocabulary):
      raise UsageError(f"vocabulary {vocabulary} does not exist; give a "
                       "SentencePiece .model file or leave it unset to train one")
    vocab_path = vocabulary
    name = f"primer_mtf_lm_{key_name}_" + os.path.basename(vocabulary).split(".")[0]
  else:
    vocab_path = trained_vocabulary(corpus, vocab_size, cache_dir, tfds_data_dir,
                                    None if corpus in TFDS_CORPORA else docs)
    name = task_name(key_name, vocab_size)

  if name not in seqio.TaskRegistry.names():
    seqio.TaskRegistry.add(
        name,
        source=source,
        preprocessors=lm_preprocessors(key),
        output_features={"targets": seqio.Feature(
            seqio.SentencePieceVocabulary(vocab_path), add_eos=False)},
        metric_fns=[])
  return name
