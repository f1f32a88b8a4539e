#!/usr/bin/env bash
# Primer-EZ with this code's pack-safe conv against Primer-EZ with the release-style
# conv (MDHA.conv_form = 'release': no packing mask, leaks across packed examples),
# side by side: the same size, steps, evaluations and data order per seed as
# `primer-mtf compare --train` gives each model. compare --train's --gin_param binds
# every model alike, so the two arms are trained here with `train` and `eval` and
# compared with `compare RUN_DIR...` (the first run is the baseline).
#
#   benchmarks/quality_release_conv.sh OUT [SEEDS] [STEPS]
#
# from the repository's root; runs with the working tree's code.
set -euo pipefail
out=${1:?usage: benchmarks/quality_release_conv.sh OUT [SEEDS] [STEPS]}
seeds=${2:-2}
steps=${3:-300}
py=${PYTHON:-.venv/bin/python}
every=$((steps / 10))
dirs=()
for ((seed = 0; seed < seeds; seed++)); do
  for form in pack_safe release; do
    dir="$out/runs/primer_ez_${form}_conv_seed${seed}"
    dirs+=("$dir")
    "$py" -m primer_mtf train --model_dir "$dir" --model primer_ez --size tiny \
      --mesh cpu --corpus kjv --train_steps "$steps" \
      --gin_param "mesh_train_dataset_fn.seed = $((1234 + seed))" \
      --gin_param "utils.run.save_checkpoints_steps = $every" \
      --gin_param "MDHA.conv_form = '$form'"
    "$py" -m primer_mtf eval --model_dir "$dir"
  done
done
"$py" -m primer_mtf compare "${dirs[@]}" --output "$out"
