#!/usr/bin/env bash
# The paper's T5-codebase LM comparison on one corpus: vanilla T5, T5++, Primer-EZ
# and Primer at one size, each trained on the same TPU slice with the paper's
# settings (objectives/packed_lm.gin: 512-token targets, 65,536 tokens a batch,
# Adafactor, lr = 1/sqrt(max(step, 10^4)), no dropout; bfloat16 activations from
# the TPU mesh), then perplexity-evaluated on every checkpoint.
#
#   launch/recipes/paper_lm.sh --corpus c4|lm1b|pg19 --size large --mesh v3_8_mp2 \
#       --name NAME --zone ZONE --project PROJECT --bucket gs://BUCKET \
#       [--train_steps N] [--dry_run]
#
# The wrappers c4_lm.sh, lm1b_lm.sh and pg19_lm.sh fix --corpus. Runs are named
# paper_<corpus>_<size>_<model> under gs://BUCKET/runs/. The models run one after
# another on one slice; evaluation follows each run over all its checkpoints.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=launch/common.sh
source launch/common.sh

# shellcheck disable=SC2034  # the flags are read back through ${!flag}
size=tiny mesh="" corpus=c4 name="" zone="" project="" bucket="" train_steps="" tfds_data_dir="" vocabulary="" accelerator="" runtime=""
flags=(size mesh corpus name zone project bucket train_steps tfds_data_dir vocabulary
       accelerator runtime)
parse_flags "${flags[@]}" -- "$@"

forward=()   # every flag given, for tpu.sh
for flag in "${flags[@]}"; do
  [ -z "${!flag}" ] || forward+=("--$flag" "${!flag}")
done
for p in "${gin_params[@]+"${gin_params[@]}"}"; do forward+=(--gin_param "$p"); done
[ "$dry_run" = 0 ] || forward+=(--dry_run)

for model in transformer transformer_plusplus primer_ez primer; do
  run="paper_${corpus}_${size}_${model}"
  bash launch/tpu.sh train --model "$model" --run "$run" "${forward[@]}"
  bash launch/tpu.sh eval --model "$model" --run "$run" "${forward[@]}" \
    --gin_param "utils.run.eval_checkpoint_step = 'all'"
done
