#!/usr/bin/env bash
# Installs primer-mtf and its pinned stack into ./.venv (or $PRIMER_MTF_VENV).
# Idempotent: a second run only reinstalls primer-mtf itself.
# Needs Python 3.9-3.11 (TensorFlow 2.15); set PYTHON to choose the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${PRIMER_MTF_VENV:-.venv}"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(not ((3, 9) <= sys.version_info[:2] <= (3, 11)))'; then
  echo "install.sh: error: $("$python" --version 2>&1) found; TensorFlow 2.15 needs Python 3.9-3.11 (set PYTHON=python3.11)" >&2
  exit 2
fi
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade "pip==24.2"
# Exact pins, no resolution: the lock file is the whole environment.
"$venv/bin/python" -m pip install --quiet --no-deps -r requirements.lock
rm -rf build   # setuptools would copy modules that were moved or removed since
"$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation --force-reinstall .
echo "installed primer-mtf into $venv"
