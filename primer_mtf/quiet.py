"""A quiet start: TensorFlow's start-up noise is dropped, everything else shows.

Importing TensorFlow makes its C++ runtime write lines that ask nothing of the
user (cuDNN/cuFFT/cuBLAS factory registration on a CPU-only machine, TensorRT
absent, CPU-feature notes) straight to file descriptor 2, below Python. While the
package imports the stack, fd 2 goes to a temporary file; the lines are then
written on, less the known noise. Real warnings and errors pass. ``-v`` on the
command line, or ``PRIMER_MTF_VERBOSE=1``, keeps everything, TF's INFO lines too.
"""

import contextlib
import os
import re
import sys
import tempfile

NOISE = re.compile(
    rb"Unable to register cu(DNN|FFT|BLAS) factory"
    rb"|TF-TRT Warning: Could not find TensorRT"
    rb"|This TensorFlow binary is optimized to use available CPU instructions"
    rb"|To enable the following instructions: .* rebuild TensorFlow"
    rb"|oneDNN custom operations are on")


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
