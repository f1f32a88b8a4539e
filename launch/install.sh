#!/usr/bin/env bash
# Installs primer-mtf and its pinned stack into ./.venv (or $PRIMER_MTF_VENV).
# Idempotent: a second run only reinstalls primer-mtf itself.
#
#   launch/install.sh [--tensorflow registry|system] [--stack training|gpu|dataflow] [--dry_run]
#
# --tensorflow registry (default; CPU and GPU): the venv is the whole environment,
#   TensorFlow included, from the package registry.
# --tensorflow system (Cloud TPU VMs; launch/tpu.sh install runs it): the venv
#   also sees the interpreter's own packages, and the lock goes in without its
#   tensorflow line, so that the image's TPU build of TensorFlow 2.15 is the one
#   imported (the registry wheel does not drive a TPU VM's TPU:
#   https://github.com/tensorflow/tensorflow/issues/52149). The lock's other pins
#   (numpy, protobuf, keras, tensorflow-estimator, tensorflow-text 2.15) take
#   precedence over the image's and are the versions TensorFlow 2.15 needs.
# --stack gpu: the training stack plus the CUDA 12.2 and cuDNN 8.9 libraries that
#   TensorFlow 2.15 is built for, as the pip wheels tensorflow[and-cuda]==2.15.1
#   names (its METADATA; installed --no-deps like the lock, so exactly these). The
#   host needs only the NVIDIA driver (525.60 or newer for CUDA 12); then
#   `launch/gpu.sh check` says whether TensorFlow sees the GPUs.
# --stack dataflow: the venv that submits `primer-mtf cache --runner dataflow`, from
#   requirements-dataflow.lock into ./.venv-dataflow: Beam's Dataflow runner needs
#   protobuf 4, the training lock has protobuf 3.20 (see that file's header).
# Needs Python 3.10 or 3.11 (the lock's pins; TensorFlow 2.15's TPU VM images run
# 3.10); set PYTHON to choose the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=launch/common.sh
source launch/common.sh

tensorflow=registry stack=training takes_gin_param=0
parse_flags tensorflow stack -- "$@"
case "$stack" in
  training|gpu) lock=requirements.lock venv="${PRIMER_MTF_VENV:-.venv}" ;;
  dataflow) lock=requirements-dataflow.lock venv="${PRIMER_MTF_VENV:-.venv-dataflow}" ;;
  *) die "--stack is training (the default), gpu (training with CUDA 12.2 and cuDNN 8.9) or dataflow (the cache job's submitter)" ;;
esac
# tensorflow[and-cuda]==2.15.1's CUDA wheels (CUDA 12.2, cuDNN 8.9), exactly
cuda_wheels=(nvidia-cublas-cu12==12.2.5.6 nvidia-cuda-cupti-cu12==12.2.142
  nvidia-cuda-nvcc-cu12==12.2.140 nvidia-cuda-nvrtc-cu12==12.2.140
  nvidia-cuda-runtime-cu12==12.2.140 nvidia-cudnn-cu12==8.9.4.25
  nvidia-cufft-cu12==11.0.8.103 nvidia-curand-cu12==10.3.3.141
  nvidia-cusolver-cu12==11.5.2.141 nvidia-cusparse-cu12==12.1.2.141
  nvidia-nccl-cu12==2.16.5 nvidia-nvjitlink-cu12==12.2.140)
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 11)))'; then
  die "$("$python" --version 2>&1) found; the lock needs Python 3.10 or 3.11 (set PYTHON=python3.11)"
fi
case "$tensorflow" in
  registry) sees_system=false ;;
  system)
    [ "$stack" != gpu ] || die "--stack gpu brings the registry's TensorFlow its CUDA; it does not go with --tensorflow system"
    "$python" -c 'import sys, tensorflow as tf; sys.exit(not tf.__version__.startswith("2.15."))' \
      2>/dev/null || die "--tensorflow system needs TensorFlow 2.15 in $python (a tpu-vm-tf-2.15 image)"
    sees_system=true ;;
  *) die "--tensorflow is registry (the venv's own) or system (the interpreter's, on a TPU VM)" ;;
esac
if [ ! -x "$venv/bin/python" ] && ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  # Debian and Ubuntu images (TPU VMs among them) ship python3 without ensurepip
  version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  die "$python cannot make a venv (no ensurepip); install python$version-venv (sudo apt-get install -y python$version-venv) and run again"
fi
if [ -x "$venv/bin/python" ]; then
  grep -qx "include-system-site-packages = $sees_system" "$venv/pyvenv.cfg" ||
    die "$venv was made for another --tensorflow; remove it and run again"
elif [ "$sees_system" = true ]; then
  run_cmd "$python" -m venv --system-site-packages "$venv"
else
  run_cmd "$python" -m venv "$venv"
fi
run_cmd "$venv/bin/python" -m pip install --quiet --upgrade "pip==24.2"
if [ "$sees_system" = true ]; then
  run_to "$venv/requirements-without-tensorflow.lock" sed '/^tensorflow==/d' "$lock"
  lock="$venv/requirements-without-tensorflow.lock"
fi
# Exact pins, no resolution: the lock file is the whole environment.
[ "$dry_run" = 1 ] || echo "installing the pinned stack into $venv (a few minutes on a fresh machine)"
run_cmd "$venv/bin/python" -m pip install --quiet --no-deps -r "$lock"
if [ "$stack" = gpu ]; then
  [ "$dry_run" = 1 ] || echo "installing CUDA 12.2 and cuDNN 8.9 (tensorflow[and-cuda]==2.15.1's wheels, about 3 GB)"
  run_cmd "$venv/bin/python" -m pip install --quiet --no-deps "${cuda_wheels[@]}"
fi
run_cmd rm -rf build   # setuptools would copy modules that were moved or removed since
run_cmd "$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation --force-reinstall .
if [ "$sees_system" = true ]; then
  run_cmd env TF_CPP_MIN_LOG_LEVEL=3 "$venv/bin/python" -W ignore -c \
    'import tensorflow as tf; print("TensorFlow", tf.__version__, "from", tf.__file__)'
fi
[ "$dry_run" = 1 ] || echo "installed primer-mtf into $venv"
