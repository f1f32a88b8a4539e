"""GPUs: what TensorFlow 2.15 needs (CUDA 12.2, cuDNN 8.9), the install option that
brings them, `gpu.sh --help`, and the one-line check that TensorFlow sees the GPUs
(this machine has none; a fake nvidia-smi stands in for a host whose GPUs
TensorFlow cannot use)."""
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

ENV = dict(os.environ, PRIMER_MTF_PYTHON=sys.executable, TMPDIR="/tmp")


def launch(script, *args, env=None):
  return subprocess.run(["bash", os.path.join(REPO, "launch", script), *args],
                        capture_output=True, text=True, env=env or ENV, timeout=300)


def _one_line(result, message):
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr


def _and_cuda_requirements():
  """The nvidia wheels the installed TensorFlow's `and-cuda` extra pins."""
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  requires = metadata.requires("tensorflow") or []
  return sorted(r.split(";")[0].replace(" ", "").replace("(", "").replace(")", "")
                for r in requires if "extra == 'and-cuda'" in r)


def test_the_installed_tensorflow_is_built_for_cuda_12_2_and_cudnn_8():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  info = tf.sysconfig.get_build_info()
  assert tf.__version__ == "2.15.1"
  assert (info["cuda_version"], info["cudnn_version"]) == ("12.2", "8")
  cudnn = [r for r in _and_cuda_requirements() if r.startswith("nvidia-cudnn-cu12")]
  assert cudnn == ["nvidia-cudnn-cu12==8.9.4.25"]
  with open(os.path.join(REPO, "docs", "launching.md")) as f:
    doc = f.read()
  assert "CUDA 12.2" in doc and "cuDNN 8.9" in doc and "--stack gpu" in doc


def test_install_stack_gpu_adds_exactly_tensorflow_and_cuda_s_wheels():
  result = launch("install.sh", "--stack", "gpu", "--dry_run")
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  lock = next(i for i, l in enumerate(lines) if "--no-deps -r requirements.lock" in l)
  cuda = lines[lock + 1].split()
  assert cuda[:6] == [".venv/bin/python", "-m", "pip", "install", "--quiet", "--no-deps"]
  assert sorted(cuda[6:]) == _and_cuda_requirements()
  plain = launch("install.sh", "--dry_run")
  assert plain.returncode == 0 and "nvidia-" not in plain.stdout


@pytest.mark.parametrize("args, message", [
    (("--stack", "gpu", "--tensorflow", "system"), "does not go with --tensorflow system"),
    (("--stack", "cuda"), "--stack is training (the default), gpu"),
    (("--gpu",), "unknown flag --gpu"),
])
def test_install_refuses_a_bad_stack_in_one_line(args, message):
  result = launch("install.sh", *args, "--dry_run")
  assert result.stdout == ""
  _one_line(result, message)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_gpu_sh_help(flag):
  result = launch("gpu.sh", flag)
  assert result.returncode == 0 and result.stderr == ""
  assert "launch/gpu.sh train|eval --mesh" in result.stdout
  assert "launch/gpu.sh check" in result.stdout
  assert "CUDA 12.2" in result.stdout and "cuDNN 8.9" in result.stdout
  assert "set -euo" not in result.stdout


def test_gpu_sh_without_a_command_points_to_help():
  _one_line(launch("gpu.sh"), "launch/gpu.sh --help")
  _one_line(launch("gpu.sh", "fly"), "unknown command 'fly'")


def _no_nvidia_smi_path(tmp_path):
  """PATH without nvidia-smi (none here anyway), bash and the tools still there."""
  folder = tmp_path / "bin"
  folder.mkdir()
  for tool in ("bash", "sed", "grep", "dirname", "basename", "cat", "tail", "wc",
               "mktemp", "rm"):
    path = subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True,
                          text=True).stdout.strip()
    if path:
      os.symlink(path, folder / tool)
  return folder


def test_gpu_sh_check_says_in_one_line_that_there_is_no_gpu(tmp_path):
  env = dict(ENV, PATH=str(_no_nvidia_smi_path(tmp_path)))
  result = launch("gpu.sh", "check", env=env)
  assert result.stdout == ""
  _one_line(result, "no GPU on this host: nvidia-smi is missing or lists none")


def test_gpu_sh_check_says_in_one_line_that_tensorflow_sees_no_gpu(tmp_path):
  """nvidia-smi lists GPUs (a fake one) but TensorFlow here has none to use."""
  folder = tmp_path / "bin"
  folder.mkdir()
  fake = folder / "nvidia-smi"
  fake.write_text("#!/bin/bash\nfor i in 0 1; do echo \"GPU $i: NVIDIA A100 "
                  "(UUID: GPU-$i)\"; done\n")
  fake.chmod(0o755)
  env = dict(ENV, PATH=f"{folder}:{os.environ['PATH']}")
  result = launch("gpu.sh", "check", env=env)
  assert result.stdout == ""
  _one_line(result, "TensorFlow sees 0 GPUs of the 2 that nvidia-smi lists")
  assert re.search(r"CUDA 12\.2 and cuDNN 8\.9: run launch/install\.sh --stack gpu",
                   result.stderr)
