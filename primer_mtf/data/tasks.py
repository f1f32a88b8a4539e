"""seqio tasks for decoder-only language modelling, named by corpus.

``corpus_task()`` is the gin entry point: gin files bind
``mesh_train_dataset_fn.mixture_or_task_name = @primer_mtf.corpus_task()``, so the
corpus, the vocabulary size and the data directory are recorded in the operative
config like every other setting. It registers the task on first use (training and
caching the SentencePiece vocabulary if needed) and returns its name.

Three objectives (``corpus_task.objective``), all packed by T5's input pipeline.
Two for decoder-only language models:
  * ``eos_per_document`` (default): each document ends in EOS, documents are
    concatenated and cut into full ``targets``-length pieces. Every document is
    read whole and every boundary is marked.
  * ``chunks_as_released``: what the authors' release ran (T5's ``unsupervised``
    preprocessing with ``objectives/lm.gin``): one random aligned chunk of at most
    65,536 tokens per document, chunks concatenated with no separator, cut into
    ``targets - 1`` tokens, and EOS appended to every piece.

and one for encoder-decoder models (``utils.run.model_type = "bitransformer"``):
  * ``span_corruption``: T5's pretraining objective (``t5_preprocessors.
    span_corruption``: 15% of the tokens dropped in spans of mean length 3, each
    span replaced by a sentinel id in the inputs, and the targets the dropped spans
    after their sentinels). The sentinels are the vocabulary's extra ids, so it
    needs ``extra_ids`` (T5: 100).
"""

import functools
import os

import gin
import seqio
import tensorflow.compat.v1 as tf
from t5.data import preprocessors as t5_preprocessors

from primer_mtf.data import cache_check
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


RELEASE_CHUNK_TOKENS = 65536   # objectives/lm.gin: select_random_chunk.max_length
CONCAT_DOCUMENTS = 128         # reduce_concat_tokens' batch, as in T5

OBJECTIVES = {
    # name: (token preprocessors after tokenization, the features' add_eos)
    "eos_per_document": ((
        append_document_eos,
        functools.partial(t5_preprocessors.reduce_concat_tokens,
                          batch_size=CONCAT_DOCUMENTS),
        t5_preprocessors.split_tokens_to_targets_length,
    ), False),
    "chunks_as_released": ((
        functools.partial(t5_preprocessors.select_random_chunk,
                          max_length=RELEASE_CHUNK_TOKENS),
        functools.partial(t5_preprocessors.reduce_concat_tokens,
                          batch_size=CONCAT_DOCUMENTS),
        t5_preprocessors.split_tokens_to_targets_length,  # targets - 1 with add_eos
        seqio.preprocessors.append_eos_after_trim,
    ), True),
    "span_corruption": ((
        t5_preprocessors.span_corruption,
        seqio.preprocessors.append_eos_after_trim,
    ), True),
}
ENCODER_DECODER_OBJECTIVES = ("span_corruption",)
# gin/objectives/NAME.gin (the --objective flag) -> corpus_task.objective
OBJECTIVE_FILES = {"packed_lm": "eos_per_document",
                   "lm_as_released": "chunks_as_released",
                   "span_corruption": "span_corruption"}
SPAN_CORRUPTION_DENSITY, SPAN_CORRUPTION_MEAN_LENGTH = 0.15, 3.0   # T5's defaults


def span_corruption_targets_length(inputs_length):
  """The targets length T5's span corruption needs for ``inputs_length`` (T5
  pretrains with 512 and 114)."""
  _, targets_length = t5_preprocessors.random_spans_helper(
      inputs_length=inputs_length, noise_density=SPAN_CORRUPTION_DENSITY,
      mean_noise_span_length=SPAN_CORRUPTION_MEAN_LENGTH,
      extra_tokens_per_span_inputs=1, extra_tokens_per_span_targets=1)
  return targets_length


def lm_objective(name):
  """(token preprocessors, add_eos) of an LM objective; one line if unknown."""
  if name not in OBJECTIVES:
    raise UsageError(f"unknown objective {name!r}; corpus_task.objective takes "
                     f"{', '.join(OBJECTIVES)}")
  return OBJECTIVES[name]


def lm_preprocessors(text_key, objective_name="eos_per_document"):
  """Tokenization, seqio's cache point, then the objective: a cache (see
  :mod:`primer_mtf.data.cache`) holds tokenized documents, and everything that
  depends on the sequence length or a seed runs after it, as in T5's tasks."""
  token_preprocessors, _ = lm_objective(objective_name)
  return [
      functools.partial(t5_preprocessors.rekey, key_map={"targets": text_key}),
      seqio.preprocessors.tokenize,
      seqio.CacheDatasetPlaceholder(),
      *token_preprocessors,
  ]


def task_name(corpus_key, vocab_name, extra_ids=0, objective="eos_per_document"):
  """The registered name of an LM task (and of its cache folder)."""
  name = f"primer_mtf_lm_{corpus_key}_{vocab_name}"
  if extra_ids:
    name += f"_x{extra_ids}"
  if objective != "eos_per_document":
    name += f"_{objective}"
  return name


def vocabulary_file(task):
  """The SentencePiece model file of a registered task's targets."""
  return seqio.get_mixture_or_task(task).output_features[
      "targets"].vocabulary.sentencepiece_model_file


def vocabulary_digest(task):
  """sha256 of the task's SentencePiece pieces; None for a bucket path, which
  is not read here."""
  path = vocabulary_file(task)
  return None if "://" in path else vocab_lib.digest(path)


def trained_vocabulary(corpus, vocab_size, cache_dir=None):
  """Path of the SentencePiece model trained on a resolved ``corpus`` (cached)."""
  return vocab_lib.cached(corpus.vocab_documents, vocab_size, corpus.key, cache_dir)


@gin.configurable("corpus_task", module="primer_mtf")
def corpus_task(corpus=corpus_lib.EMBEDDED, vocab_size=4096, vocabulary=None,
                cache_dir=None, tfds_data_dir=None, extra_ids=0,
                objective="eos_per_document", data_cache=None):
  """Registers (once) and names the LM task of a corpus.

  Args:
    corpus: a ``--corpus`` value, see :func:`primer_mtf.data.corpus.resolve`.
    vocab_size: pieces of the SentencePiece model trained on the corpus.
    vocabulary: path of an existing SentencePiece model (for example T5's,
      see gin/vocabularies/t5.gin) to use instead of training one.
    cache_dir: where trained vocabularies are cached (default
      ``$PRIMER_MTF_CACHE`` or ``~/.cache/primer_mtf``).
    tfds_data_dir: TFDS data directory for the TFDS corpora.
    extra_ids: sentinel ids added after the pieces (T5's vocabulary has 100).
    objective: a name in :data:`OBJECTIVES`.
    data_cache: a folder of pre-tokenized caches (``primer-mtf cache``); the
      task's cache there must be complete and built with this vocabulary. Read
      it with ``mesh_train_dataset_fn.use_cached = True``.

  Returns:
    the registered task name.
  """
  _, add_eos = lm_objective(objective)
  encoder_decoder = objective in ENCODER_DECODER_OBJECTIVES
  if encoder_decoder and not extra_ids:
    raise UsageError(f"objective {objective} needs sentinel ids: bind "
                     "corpus_task.extra_ids (T5: 100)")
  resolved = corpus_lib.resolve(corpus, tfds_data_dir)
  if vocabulary:
    if not tf.io.gfile.exists(vocabulary):
      raise UsageError(f"vocabulary {vocabulary} does not exist; give a "
                       "SentencePiece .model file or leave it unset to train one")
    vocab_lib.check_model_file(vocabulary)
    vocab_path = vocabulary
    vocab_name = os.path.basename(vocabulary).split(".")[0]
  else:
    vocab_path = trained_vocabulary(resolved, vocab_size, cache_dir)
    vocab_name = f"sp{vocab_size}"
  name = task_name(resolved.key, vocab_name, extra_ids, objective)

  if name not in seqio.TaskRegistry.names():
    feature = functools.partial(
        seqio.Feature, seqio.SentencePieceVocabulary(vocab_path, extra_ids=extra_ids),
        add_eos=add_eos)
    features = {"targets": feature()}
    if encoder_decoder:
      features["inputs"] = feature(required=False)   # made by the objective
    seqio.TaskRegistry.add(
        name,
        source=resolved.source,
        preprocessors=lm_preprocessors(resolved.text_field, objective),
        output_features=features,
        metric_fns=[])
  if data_cache:
    hint = build_hint(corpus, vocab_size, vocabulary, objective, data_cache)
    cache_check.check(data_cache, name, hint, vocabulary_file(name),
                      vocabulary_digest(name))
    cache_check.use(data_cache)
  return name


def task_flags(vocab_size, vocabulary, objective):
  """The ``primer-mtf`` flags besides ``--corpus`` that name an LM task, as
  ``cache`` and ``train`` take them."""
  names = {v: k for k, v in OBJECTIVE_FILES.items()}
  flags = f"--vocabulary {vocabulary}" if vocabulary else f"--vocab_size {vocab_size}"
  return flags + f" --objective {names.get(objective, objective)}"


def build_hint(corpus, vocab_size, vocabulary, objective, data_cache):
  """The ``primer-mtf cache`` command that builds a task's cache."""
  return (f"primer-mtf cache --corpus {corpus} --output {data_cache} "
          f"{task_flags(vocab_size, vocabulary, objective)}")
