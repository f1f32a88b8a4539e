#!/usr/bin/env bash
# Trains, then evaluates, on this machine's CPU: a small model on a mesh of
# virtual CPU devices (cpu, cpu_2x2, cpu_1x4) that stands in for a pod slice.
#
#   launch/local.sh --model_dir DIR [--model primer] [--size tiny] [--mesh cpu]
#       [--corpus kjv|FILE|FOLDER] [--train_steps N] [--gin_param BINDING] [--dry_run]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=launch/common.sh
source launch/common.sh

model=primer size=tiny mesh=cpu corpus=kjv model_dir="" train_steps=""
parse_flags model size mesh corpus model_dir train_steps -- "$@"
[ -n "$model_dir" ] || die "--model_dir DIR is required"
read_plan "$model" "$size" "$mesh"
[ "$plan_accelerator" = cpu ] || die "mesh '$mesh' is not a CPU mesh; use launch/tpu.sh or launch/gpu.sh"
check_plan

train=(--model_dir "$model_dir" --model "$model" --size "$size" --mesh "$mesh" --corpus "$corpus")
[ -z "$train_steps" ] || train+=(--train_steps "$train_steps")
for p in "${gin_params[@]+"${gin_params[@]}"}"; do train+=(--gin_param "$p"); done
run_cmd "$(python_bin)" -m primer_mtf train "${train[@]}"
run_cmd "$(python_bin)" -m primer_mtf eval --model_dir "$model_dir"
