"""Gin configuration of a run: which files, in what order, and what they say.

A run is described by gin files plus bindings, T5 style. The shortcuts
``--model``, ``--size`` and ``--mesh`` name files under ``gin/models``,
``gin/sizes`` and ``gin/meshes``; they are parsed after mesh-tensorflow's
``defaults.gin`` and the objective, and before the user's own files and bindings.
Everything else reads the parsed configuration through :func:`query` and the
helpers below it (mesh, layout rules, sequence length, batch), never through gin's
own internals.
"""

import contextlib
import logging
import os

import gin
import mesh_tensorflow as mtf

from primer_mtf.errors import UsageError

OBJECTIVE = "packed_lm"   # EOS after each document; see gin/objectives/
MTF_DEFAULTS = "defaults.gin"


def gin_dir():
  """The gin/ folder: inside the installed package, or beside it in a checkout."""
  here = os.path.dirname(os.path.abspath(__file__))
  for candidate in (os.path.join(here, "gin"), os.path.join(os.path.dirname(here), "gin")):
    if os.path.isdir(os.path.join(candidate, "models")):
      return candidate
  raise UsageError("primer_mtf's gin/ folder is missing; reinstall primer-mtf")


def search_paths():
  import mesh_tensorflow.transformer as mtf_transformer  # pylint: disable=g-import-not-at-top
  import t5.models  # pylint: disable=g-import-not-at-top
  return [gin_dir(),
          os.path.join(os.path.dirname(mtf_transformer.__file__), "gin"),
          os.path.join(os.path.dirname(t5.models.__file__), "gin")]


def locate(path):
  """The first of the search paths that holds ``path`` (absolute paths pass)."""
  if os.path.isabs(path) or os.path.exists(path):
    return path
  for folder in search_paths():
    candidate = os.path.join(folder, path)
    if os.path.exists(candidate):
      return candidate
  raise UsageError(f"gin file {path} not found here or under {gin_dir()}")


def names(kind):
  """The names usable with ``--model``, ``--size`` or ``--mesh`` (``bi/x`` for
  the encoder-decoder models in ``models/bi``)."""
  folder = os.path.join(gin_dir(), kind)
  found = []
  for root, _, files in os.walk(folder):
    rel = os.path.relpath(root, folder)
    found += [os.path.normpath(os.path.join(rel, f[:-len(".gin")]))
              for f in files if f.endswith(".gin")]
  return sorted(found)


def decoder_only_models():
  return [m for m in names("models") if not m.startswith("bi/")]


def resolve(kind, name):
  """``models/NAME.gin`` for a ``--model NAME`` shortcut, with a clear error."""
  known = names(kind)
  if name not in known:
    flag = {"models": "--model", "sizes": "--size", "meshes": "--mesh",
            "objectives": "--objective", "finetune": "--format"}[kind]
    raise UsageError(f"unknown {flag} {name!r}; choose one of: {', '.join(known)}")
  return f"{kind}/{name}.gin"


def parse(model, size, mesh, gin_files=(), gin_params=(), objective=OBJECTIVE):
  """Parses a run's gin configuration in place of any earlier one; returns the
  files it read, in order. A caller whose own configuration must survive parses
  inside :func:`preserved`."""
  files = [MTF_DEFAULTS, resolve("objectives", objective), resolve("models", model),
           resolve("sizes", size), resolve("meshes", mesh)] + list(gin_files)
  clear()
  parse_files(files, gin_params)
  return files


def clear():
  """Starts a configuration afresh (mesh-tensorflow reads gin's global one)."""
  gin.clear_config()


@contextlib.contextmanager
def preserved():
  """Within it, gin may be cleared and parsed; after it the caller's configuration
  is back as it was (bindings, imports, lock and operative config).

  mesh-tensorflow and T5 read gin's one global configuration, so a run's
  configuration has to be the global one while its graph is built. Code that
  configures a run for a moment (the planner, the benchmarks, compare) does it
  here, so it never clears what its caller parsed. gin has no public snapshot, so
  this copies the module state that ``gin.clear_config`` resets.
  """
  from gin import config as gin_config  # pylint: disable=g-import-not-at-top
  saved = ({k: dict(v) for k, v in gin_config._CONFIG.items()},  # pylint: disable=protected-access
           set(gin_config._IMPORTS), dict(gin_config._SINGLETONS),  # pylint: disable=protected-access
           dict(gin_config._OPERATIVE_CONFIG), gin.config_is_locked())  # pylint: disable=protected-access
  try:
    yield
  finally:
    bindings, imports, singletons, operative, locked = saved
    for state, value in ((gin_config._CONFIG, bindings), (gin_config._IMPORTS, imports),  # pylint: disable=protected-access
                         (gin_config._SINGLETONS, singletons),  # pylint: disable=protected-access
                         (gin_config._OPERATIVE_CONFIG, operative)):  # pylint: disable=protected-access
      state.clear()
      state.update(value)
    gin_config._set_config_is_locked(locked)  # pylint: disable=protected-access


def parse_files(files, gin_params=()):
  """Parses gin files (found on the search paths), then bindings, on top of what
  is parsed already; one line for a bad file or binding. T5's deprecated names
  (in old operative configs) are skipped, as ``t5_mesh_transformer`` does."""
  from t5.models import mesh_transformer  # pylint: disable=g-import-not-at-top
  for path in search_paths():  # for `include` inside gin files
    gin.add_config_file_search_path(path)
  root = logging.getLogger()
  level = root.level
  root.setLevel(logging.CRITICAL)  # gin logs an error for every search-path miss
  try:
    with gin.unlock_config():
      gin.parse_config_files_and_bindings(
          [locate(f) for f in files], list(gin_params), finalize_config=False,
          skip_unknown=mesh_transformer.DEPRECATED_GIN_REFERENCES)
  except (IOError, ValueError, SyntaxError) as e:
    raise UsageError(f"bad gin configuration: {str(e).splitlines()[0]}") from None
  finally:
    root.setLevel(level)


def bindings():
  """{name: value} of every binding and macro parsed, as gin prints them (the
  whole effective configuration, in text that compares exactly)."""
  out, key = {}, None
  for line in gin.config_str().splitlines():
    if line[:1].isspace() and key:            # a value continued on this line
      out[key] = (out[key] + " " + line.strip().rstrip("\\").strip()).strip()
    elif " = " in line and not line.startswith(("#", "import ")):
      key, value = line.split(" = ", 1)
      out[key] = value.rstrip("\\").strip()   # a trailing backslash continues it
    else:
      key = None
  return out


def query(name, default=None):
  """A bound gin value, following macros (``%d_ff``) to their values."""
  try:
    value = gin.query_parameter(name)
    while isinstance(value, gin.config.ConfigurableReference) and str(value).startswith("%"):
      value = gin.query_parameter(str(value))
    return value
  except ValueError:
    return default


def mesh_shape():
  """The run's mesh shape, evaluating ``@utils.tpu_mesh_shape()`` where bound."""
  value = query("utils.run.mesh_shape", "")
  if isinstance(value, gin.config.ConfigurableReference):
    from mesh_tensorflow.transformer import utils as mtf_utils  # pylint: disable=g-import-not-at-top
    if "tpu_mesh_shape" not in str(value):
      raise UsageError(f"cannot read utils.run.mesh_shape = {value}")
    value = mtf_utils.tpu_mesh_shape()
  return mtf.convert_to_shape(value)


def layout_rules():
  return mtf.convert_to_layout_rules(query("utils.run.layout_rules"))


def sequence_length():
  """``{"inputs": n, "targets": n}``, whichever form ``utils.run`` is given."""
  value = query("utils.run.sequence_length")
  if isinstance(value, int):
    return {"inputs": value, "targets": value}
  return dict(value)


def batch_sequences():
  """Sequences per batch, converting ``("tokens_per_batch", n)`` and the like."""
  from mesh_tensorflow.transformer import utils as mtf_utils  # pylint: disable=g-import-not-at-top
  value = query("utils.run.batch_size")
  if isinstance(value, int):
    return value
  return mtf_utils.compute_batch_size(sequence_length(), mesh_shape(),
                                      layout_rules(), value)
