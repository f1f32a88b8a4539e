"""Gin configuration of a run: which files, in what order, and checks before it starts.

A run is described by gin files plus bindings, T5 style. The shortcuts
``--model``, ``--size`` and ``--mesh`` name files under ``gin/models``,
``gin/sizes`` and ``gin/meshes``; they are parsed after mesh-tensorflow's
``defaults.gin`` and the objective, and before the user's own files and bindings.
"""

import logging
import os

import gin
import mesh_tensorflow as mtf

from primer_mtf.errors import UsageError

OBJECTIVE = "objectives/packed_lm.gin"
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
    flag = {"models": "--model", "sizes": "--size", "meshes": "--mesh"}[kind]
    raise UsageError(f"unknown {flag} {name!r}; choose one of: {', '.join(known)}")
  return f"{kind}/{name}.gin"


def parse(model, size, mesh, gin_files=(), gin_params=()):
  """Parses a run's gin configuration (clearing any earlier one)."""
  files = [MTF_DEFAULTS, OBJECTIVE, resolve("models", model),
           resolve("sizes", size), resolve("meshes", mesh)] + list(gin_files)
  gin.clear_config()
  for path in search_paths():  # for `include` inside gin files
    gin.add_config_file_search_path(path)
  root = logging.getLogger()
  level = root.level
  root.setLevel(logging.CRITICAL)  # gin logs an error for every search-path miss
  try:
    gin.parse_config_files_and_bindings([locate(f) for f in files],
                                        list(gin_params),
                                        finalize_config=False)
  except (IOError, ValueError, SyntaxError) as e:
    raise UsageError(f"bad gin configuration: {str(e).splitlines()[0]}") from None
  finally:
    root.setLevel(level)
  return files


def _query(name, default=None):
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
  value = _query("utils.run.mesh_shape", "")
  if isinstance(value, gin.config.ConfigurableReference):
    from mesh_tensorflow.transformer import utils as mtf_utils  # pylint: disable=g-import-not-at-top
    if "tpu_mesh_shape" not in str(value):
      raise UsageError(f"cannot read utils.run.mesh_shape = {value}")
    value = mtf_utils.tpu_mesh_shape()
  return mtf.convert_to_shape(value)


def tensor_dims():
  """Sizes of the model dimensions that layout rules may shard."""
  return {"heads": _query("SelfAttention.num_heads"),
          "d_ff": _query("DenseReluDense.hidden_size")}


def check_layout(mesh_shape=None, layout_rules=None, dims=None):
  """Fails with one line where a sharded dimension does not divide its mesh axis."""
  mesh_shape = (mtf.convert_to_shape(mesh_shape) if mesh_shape is not None
                else globals()["mesh_shape"]())
  rules = mtf.convert_to_layout_rules(
      layout_rules or _query("utils.run.layout_rules"))
  dims = dims or tensor_dims()
  for tensor_dim, size in dims.items():
    if size is None:
      continue
    axis = rules.tensor_dimension_to_mesh_axis(
        mtf.Dimension(tensor_dim, size), mesh_shape)
    if axis is None:
      continue
    mesh_dim = mesh_shape.dims[axis]
    if size % mesh_dim.size:
      raise UsageError(
          f"{tensor_dim}={size} does not divide over mesh dimension "
          f"{mesh_dim.name}:{mesh_dim.size}; choose a mesh whose {mesh_dim.name} "
          f"size divides {size}, or change the size")
