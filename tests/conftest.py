"""Shared fixtures: an isolated vocabulary cache and a CLI runner."""
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


def read_progress(model_dir):
  with open(os.path.join(model_dir, "train_progress.jsonl")) as f:
    return [json.loads(line) for line in f]
