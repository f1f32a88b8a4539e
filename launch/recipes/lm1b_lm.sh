#!/usr/bin/env bash
# The paper's lm1b LM experiment (T5 codebase): see paper_lm.sh for the flags.
set -euo pipefail
exec bash "$(dirname "$0")/paper_lm.sh" --corpus lm1b "$@"
