"""``pydocs``: a second English corpus, technical prose, that needs no download.

The KJV is one book of 17th-century narrative and verse; this is present-day
technical writing: the Python documentation that an installed Python and the pinned
NumPy carry with them. Documents, in this order:
  * CPython's language-reference topics (``pydoc_data.topics``, what ``help()``
    prints for keywords and symbols), one document per topic;
  * the docstrings of every standard-library module (every ``.py`` file of the
    stdlib folder, test folders and ``site-packages`` left out), one document per
    module: its docstrings in source order, read with ``ast`` (nothing imported);
  * the same for NumPy's modules (numpy==1.26.4, pinned in requirements.lock).

About 3.9 MB of text and 1,200 documents under Python 3.11. The stdlib part
follows the Python that runs it (3.10 and 3.11 differ a little), so the corpus's
cache key is a hash of its content. Characters that no SentencePiece vocabulary
should spend a piece on (outside Latin-1 and general punctuation) are dropped.

License: the CPython documentation and source are under the Python Software
Foundation License (PSF-2.0); NumPy's under the BSD 3-Clause License. Both allow
redistribution and derived works with the copyright notice kept; this module
ships no text, it reads the installed copies.
"""

import ast
import functools
import importlib.util
import os
import sysconfig

NAME = "pydocs"
_SKIP_DIRS = {"test", "tests", "site-packages", "dist-packages", "__pycache__"}


def _keep(ch):
  return ord(ch) < 0x250 or 0x2000 <= ord(ch) < 0x2070


def _clean(text):
  return "".join(ch for ch in text if _keep(ch)).strip()


def topics():
  """The language-reference topics, sorted by name."""
  from pydoc_data import topics as pydoc_topics  # pylint: disable=g-import-not-at-top
  return [_clean(pydoc_topics.topics[k]) for k in sorted(pydoc_topics.topics)]


def python_files(root):
  """Every ``.py`` file below ``root`` (test folders left out), sorted."""
  paths = []
  for folder, dirs, names in os.walk(root):
    dirs[:] = [d for d in dirs if d not in _SKIP_DIRS and not d.startswith(".")]
    paths += [os.path.join(folder, n) for n in names if n.endswith(".py")]
  return sorted(paths, key=lambda p: os.path.relpath(p, root))


def module_docstrings(path):
  """A module's docstrings (its own, its classes' and functions'), in source
  order, joined by blank lines; "" when it has none or does not parse."""
  try:
    with open(path, encoding="utf-8") as f:
      tree = ast.parse(f.read())
  except (SyntaxError, UnicodeDecodeError, ValueError):
    return ""
  nodes = [n for n in ast.walk(tree) if isinstance(
      n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
  nodes.sort(key=lambda n: getattr(n, "lineno", 0))
  docs = [ast.get_docstring(n) for n in nodes]
  return _clean("\n\n".join(d for d in docs if d))


def docstring_documents(root):
  return [d for d in map(module_docstrings, python_files(root)) if d]


def documents():
  """Every document of the corpus, in the order of the module docstring."""
  return list(_documents())


@functools.lru_cache(maxsize=1)
def _documents():  # parsing ~1,000 files takes seconds: once a process
  numpy = os.path.dirname(importlib.util.find_spec("numpy").origin)
  return tuple(topics() + docstring_documents(sysconfig.get_paths()["stdlib"])
               + docstring_documents(numpy))
