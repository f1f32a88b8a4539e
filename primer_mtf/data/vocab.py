"""SentencePiece vocabularies trained on a corpus, cached on disk and reused.

Ids follow T5: pad 0, EOS 1, UNK 2, no BOS. A vocabulary trains on the training
documents only. SentencePiece skips a sentence longer than its limit, so a longer
document is cut into pieces under it (at whitespace) and read whole. Training
writes to a temporary prefix and renames, so a crash never leaves a half-written
model in the cache.
"""

import os
import tempfile

import sentencepiece as spm

from primer_mtf.errors import UsageError

_MAX_SENTENCE_LENGTH = 1 << 16
DEFAULT_CACHE = os.path.join("~", ".cache", "primer_mtf")

# T5's vocabulary (gin/vocabularies/t5.gin): 32,000 pieces and 100 sentinel ids;
# mesh-tensorflow rounds the embedding up to a multiple of 128 rows
# (Unitransformer.vocab_divisor), so it has 32,128 rows.
T5_PIECES = 32000
T5_EXTRA_IDS = 100
VOCAB_DIVISOR = 128


def embedding_rows(pieces, extra_ids=0, divisor=VOCAB_DIVISOR):
  """Rows of the embedding a vocabulary of ``pieces`` + ``extra_ids`` gets."""
  return -(-(pieces + extra_ids) // divisor) * divisor


T5_EMBEDDING_ROWS = embedding_rows(T5_PIECES, T5_EXTRA_IDS)


def pieces_under_limit(documents, limit=_MAX_SENTENCE_LENGTH):
  """Each document, cut at whitespace into pieces of at most ``limit`` bytes (a
  piece with no whitespace is cut anywhere)."""
  for doc in documents:
    data = doc.encode("utf-8")
    while len(data) > limit:
      cut = data.rfind(b" ", 0, limit + 1)
      cut = cut if cut > 0 else limit
      while cut and (data[cut] & 0xC0) == 0x80:   # not inside a UTF-8 character
        cut -= 1
      yield data[:cut].decode("utf-8")
      data = data[cut:].lstrip(b" ")
    if data:
      yield data.decode("utf-8")


def check_model_file(path):
  """A local file given as a vocabulary must load as a SentencePiece model (a
  bucket path is read where the run runs)."""
  if "://" in path:
    return
  try:
    spm.SentencePieceProcessor(model_file=path)
  except (OSError, RuntimeError) as e:
    reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    raise UsageError(f"vocabulary {path} is not a SentencePiece model ({reason}); "
                     "give a .model file that SentencePiece wrote") from None


def digest(path):
  """A hash of what a SentencePiece model tokenizes with: its pieces and their
  scores. (The file's bytes also hold the temporary path it was trained under, so
  two trainings of the same vocabulary differ there and nowhere that matters.)"""
  import hashlib  # pylint: disable=g-import-not-at-top
  sp = spm.SentencePieceProcessor(model_file=path)
  h = hashlib.sha256()
  for i in range(sp.get_piece_size()):
    h.update(f"{sp.id_to_piece(i)}\t{sp.get_score(i)!r}\n".encode("utf-8"))
  return h.hexdigest()[:16]


def cache_dir(path=None):
  return os.path.expanduser(path or os.environ.get("PRIMER_MTF_CACHE", DEFAULT_CACHE))


def train(documents, vocab_size, output_path, seed_sentences=200000):
  """Trains a unigram SentencePiece model on ``documents`` into ``output_path``."""
  if vocab_size < 16:
    raise UsageError(f"vocab_size {vocab_size} is too small; use at least 16")
  out_dir = os.path.dirname(os.path.abspath(output_path))
  os.makedirs(out_dir, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
    prefix = os.path.join(tmp, "sp")
    try:
      spm.SentencePieceTrainer.train(
          sentence_iterator=pieces_under_limit(documents), model_prefix=prefix,
          vocab_size=vocab_size, model_type="unigram", character_coverage=1.0,
          pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
          input_sentence_size=seed_sentences, shuffle_input_sentence=True,
          max_sentence_length=_MAX_SENTENCE_LENGTH, num_threads=1,
          minloglevel=2)
    except RuntimeError as e:
      first_line = str(e).strip().splitlines()[-1]
      fix = ("a larger --vocab_size: it must hold every character of the corpus"
             if "smaller than required_chars" in first_line else "a smaller --vocab_size")
      raise UsageError(f"SentencePiece could not train a {vocab_size}-piece "
                       f"vocabulary on this corpus ({first_line}); try {fix}") from None
    os.replace(prefix + ".model", output_path)
  return output_path


def cached(documents, vocab_size, name, cache=None):
  """Path of the vocabulary for ``name`` (a corpus key), trained if not cached.

  ``documents``: a function returning the documents, called only to train.
  """
  # "_train": trained on the training split only (older caches read every document)
  path = os.path.join(cache_dir(cache), "vocab", f"{name}_{vocab_size}_train.model")
  if not os.path.exists(path):
    train(documents(), vocab_size, path)
  return path
