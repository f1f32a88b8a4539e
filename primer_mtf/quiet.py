"""A quiet command line: TensorFlow's noise is dropped, everything else shows.

TensorFlow's C++ runtime writes lines that ask nothing of the user straight to
file descriptor 2, below Python: at import (cuDNN/cuFFT/cuBLAS factory
registration on a CPU-only machine, TensorRT absent, CPU-feature notes) and, on
CPU, mesh-tensorflow's ``tf.Print`` of ``step, tf_loss`` at every step. While the
package imports the stack, fd 2 goes to a temporary file whose lines are then
written on, less the known noise; the ``primer-mtf`` command also filters fd 2
for the rest of its run. Real warnings and errors pass. ``-v`` on the command
line, or ``PRIMER_MTF_VERBOSE=1``, keeps everything, TF's INFO lines too.
"""

import atexit
import contextlib
import os
import re
import sys
import tempfile
import threading

NOISE = re.compile(
    rb"Unable to register cu(DNN|FFT|BLAS) factory"
    rb"|TF-TRT Warning: Could not find TensorRT"
    rb"|This TensorFlow binary is optimized to use available CPU instructions"
    rb"|To enable the following instructions: .* rebuild TensorFlow"
    rb"|oneDNN custom operations are on"
    # XLA's CPU JIT (layers/fused_dconv.py) on every compiled cluster's first run
    rb"|SetPriority unimplemented for this stream"
    rb"|Compiled cluster using XLA!"
    rb"|All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|^step, tf_loss\["
    # seqio's advice for in-memory sources; ours shuffle documents themselves
    rb"|Using an uncached FunctionDataset for training is not recommended"
    # Apache Beam at import, without its GCP extra (the DirectRunner needs none)
    rb"|Failed to import GCSFileSystem; loading of this filesystem will be skipped"
    rb"|apitools not found, and bigquery client libraries are not available")


def verbose():
  """``-v``/``--verbose`` on the command line, or ``PRIMER_MTF_VERBOSE=1``."""
  return (os.environ.get("PRIMER_MTF_VERBOSE") == "1" or
          any(a in ("-v", "--verbose") for a in sys.argv[1:]))


def set_tf_log_level():
  """TF's C++ INFO lines (and mesh-tensorflow's per-step ``tf.Print`` of
  ``step, tf_loss``) only when verbose; a value the user set wins."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose() else "1")


@contextlib.contextmanager
def native_stderr_filtered(noise=NOISE):
  """Drops lines matching ``noise`` from what is written to fd 2 inside the block."""
  if verbose():
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as capture:
    os.dup2(capture.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      capture.seek(0)
      kept = b"".join(line for line in capture if not noise.search(line))
      if kept:
        os.write(2, kept)


def filter_native_stderr(noise=NOISE):
  """Drops lines matching ``noise`` from all that fd 2 gets until the process ends.

  A pipe takes fd 2's place; a thread passes its lines on to the real stderr.
  """
  if verbose():
    return
  sys.stderr.flush()
  read_end, write_end = os.pipe()
  to_stderr, original = os.dup(2), os.dup(2)
  os.dup2(write_end, 2)
  os.close(write_end)

  def pump():
    with os.fdopen(read_end, "rb") as pipe, os.fdopen(to_stderr, "wb", 0) as out:
      for line in pipe:
        if not noise.search(line):
          out.write(line)

  thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
  thread.start()

  def restore():
    sys.stderr.flush()
    os.dup2(original, 2)   # the pipe's last write end closes: the pump drains, ends
    os.close(original)
    thread.join(timeout=10)

  atexit.register(restore)
