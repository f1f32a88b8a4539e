"""Shared fixtures: an isolated vocabulary cache and a CLI runner."""
import hashlib
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session", autouse=True)
def vocab_cache(tmp_path_factory):
  """Tests train their vocabularies into a fresh cache, never the user's."""
  path = str(tmp_path_factory.mktemp("cache"))
  os.environ["PRIMER_MTF_CACHE"] = path
  return path


def run_cli(*args, timeout=900):
  """Runs ``python -m primer_mtf ARGS`` in a subprocess, as a user would."""
  return subprocess.run([sys.executable, "-m", "primer_mtf", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=timeout,
                        env=dict(os.environ))


def digests(folder):
  """{path under ``folder``: sha256 of its bytes} of every file in it."""
  out = {}
  for root, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
  return out


def checkpoint_weights(checkpoint):
  """{name: value} of every tensor in a checkpoint."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  reader = tf.train.load_checkpoint(checkpoint)
  return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}


def differing_weights(checkpoint_a, checkpoint_b):
  """Names of the tensors whose values differ between two checkpoints (which must
  hold the same names)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  wa, wb = checkpoint_weights(checkpoint_a), checkpoint_weights(checkpoint_b)
  assert wa.keys() == wb.keys()
  return sorted(n for n in wa if not np.array_equal(wa[n], wb[n]))


def read_progress(model_dir):
  with open(os.path.join(model_dir, "train_progress.jsonl")) as f:
    return [json.loads(line) for line in f]


# The README's test command runs the fast tier and these graph tests: one of each
# kind of exact check (numpy references, decode against the forward pass on one
# device and on 2x2, a sharded mesh against one device, packing, the pre/post
# norm, the determinism of the training stream that exact resume relies on).
# The rest of the graph tier runs in CI after it.
CORE = (
    "tests/test_primer_layers.py::test_packed_examples_do_not_leak_through_the_conv[True-primer_ez]",
    "tests/test_primer_layers.py::test_negative_control_a_conv_without_the_mask_leaks",
    "tests/test_primer_layers.py::test_greedy_decoding_equals_teacher_forced_argmax[False--True-primer_ez]",
    "tests/test_primer_layers.py::test_greedy_decoding_equals_teacher_forced_argmax[False-batch:2,model:2-True-primer]",
    "tests/test_primer_layers.py::test_2x2_mesh_loss_and_gradient_norm_equal_one_device[primer_ez-extra0]",
    "tests/test_primer_layers.py::test_primer_uses_the_pre_post_norm_stack_and_primer_norm",
    "tests/test_fused_dconv.py::test_causal_values_and_gradients_match_numpy_and_the_unfused_form[1-2x2-True]",
    "tests/test_data_stream.py::test_skipping_k_batches_gives_batch_k_plus_1_across_epochs[packed_lm]",
)


def pytest_collection_modifyitems(config, items):
  del config
  for item in items:
    if item.nodeid in CORE:
      item.add_marker("core")
