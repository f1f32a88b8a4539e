#!/usr/bin/env bash
# The paper's c4 LM experiment (T5 codebase): see paper_lm.sh for the flags.
set -euo pipefail
exec bash "$(dirname "$0")/paper_lm.sh" --corpus c4 "$@"
