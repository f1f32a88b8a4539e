"""``import primer_mtf`` leaves mesh-tensorflow, TensorFlow, t5 and seqio as it found them.

A fresh interpreter imports the stack as a user of mesh-tensorflow would (with the
one compat step, primer_mtf_compat's alias, which the venv's ``.pth`` hook runs
before mesh-tensorflow loads), records every attribute of every module of
mesh_tensorflow, t5 and seqio, and of TensorFlow's modules, and of each class
those modules define (the ``id`` of each value), then imports primer_mtf and
loads it, and records them again. A control in the same process then sets two
attributes, as the old patches did, and must be reported.
"""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r'''
import json, sys, types

PACKAGES = ("tensorflow", "tensorflow_estimator", "keras", "mesh_tensorflow", "t5",
            "seqio")


def watched():
  return {name: m for name, m in list(sys.modules.items())
          if isinstance(m, types.ModuleType) and name.split(".")[0] in PACKAGES}


def record(value):
  return [id(value), type(value).__name__, getattr(value, "__name__", None)]


def snapshot(modules):
  """{module: {name: record}}; a class defined in the module adds 'Class.name'."""
  out = {}
  for name, module in modules.items():
    entries = {}
    for key, value in list(vars(module).items()):
      entries[key] = record(value)
      if isinstance(value, type) and value.__module__ == name:
        for attr, class_value in list(vars(value).items()):
          entries[f"{key}.{attr}"] = record(class_value)
    out[name] = entries
  return out


def benign(module, key, old, new):
  """Import side effects, not patches: a submodule bound in its package when first
  imported; a TF lazy loader replaced by the module it loaded; warning registries."""
  if key == "__warningregistry__":
    return True
  if old is None:
    return new[1] == "module" and new[2] == f"{module}.{key}"
  return old[1].endswith("LazyLoader") and new[1] == "module"


def changes(before, after):
  found = []
  for module, entries in before.items():
    now = after[module]
    for key in sorted(set(entries) | set(now)):
      old, new = entries.get(key), now.get(key)
      if old != new and not (new is not None and benign(module, key, old, new)):
        found.append(f"{module}.{key}")
  return found


import tensorflow.compat.v1 as tf  # the stack as a user imports it, with the fix
tf_only = watched()
before_fix = snapshot(tf_only)
import primer_mtf_compat
primer_mtf_compat.make_stack_importable()   # the .pth hook's steps, named
fix = changes(before_fix, snapshot(tf_only))

import mesh_tensorflow as mtf
import mesh_tensorflow.ops_with_redefined_builtins
from mesh_tensorflow.transformer import attention, transformer, transformer_layers, utils
import t5.models
import seqio
from tensorflow.python.summary.writer import writer_cache

modules = watched()
before = snapshot(modules)
writers_before = sorted(writer_cache.FileWriterCache._cache)

import primer_mtf
primer_mtf.load()
after = snapshot(modules)
found = changes(before, after)
if sorted(writer_cache.FileWriterCache._cache) != writers_before:
  found.append("FileWriterCache._cache")

# the control: the two kinds of patch the package used to make
attention.attention = lambda *args, **kwargs: None
transformer_layers.SelfAttention.attention_fn = property(lambda self: None)
control = changes(before, snapshot(modules))

print("RESULT " + json.dumps({"fix": fix, "found": found, "control": control,
                              "modules": len(modules)}))
'''


def _run():
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
             TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600, check=False)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  assert proc.returncode == 0 and lines, proc.stderr[-3000:]
  return json.loads(lines[-1][len("RESULT "):])


def test_import_primer_mtf_changes_no_attribute_of_the_stack():
  result = _run()
  assert result["modules"] > 100   # mesh_tensorflow, t5, seqio and TF were watched
  assert result["found"] == [], (
      "import primer_mtf changed these attributes: " + ", ".join(result["found"]))
  # the control: deliberate patches of a module and of a class are reported
  assert result["control"] == [
      "mesh_tensorflow.transformer.attention.attention",
      "mesh_tensorflow.transformer.transformer_layers.SelfAttention.attention_fn"]
  # the one compat step adds TF's old name and nothing else (none if TF has it)
  assert result["fix"] in (
      [], ["tensorflow.python.framework.ops.register_tensor_conversion_function"])


def test_graph_written_once_puts_the_writer_cache_back(tmp_path):
  """The one edit of TF's private state is inside an explicit call, and undone."""
  from primer_mtf.training import events  # pylint: disable=g-import-not-at-top
  from tensorflow.python.summary.writer import writer_cache  # pylint: disable=g-import-not-at-top
  cache = writer_cache.FileWriterCache._cache  # pylint: disable=protected-access
  model_dir, other = str(tmp_path / "run"), str(tmp_path / "other")
  os.makedirs(model_dir)
  open(os.path.join(model_dir, "events.out.tfevents.1"), "w").close()
  previous = object()
  cache[model_dir] = previous
  try:
    before = dict(cache)
    with events.graph_written_once(model_dir):
      assert isinstance(cache[model_dir], events.ScalarsOnlyFileWriter)
      assert {k: v for k, v in cache.items() if k != model_dir} == {
          k: v for k, v in before.items() if k != model_dir}
    assert cache == before and cache[model_dir] is previous
    with events.graph_written_once(other):   # no events yet: nothing changes
      assert cache == before
  finally:
    cache.pop(model_dir, None)
