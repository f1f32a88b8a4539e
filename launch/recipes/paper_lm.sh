#!/usr/bin/env bash
# The paper's T5-codebase LM comparison on one corpus: vanilla T5, T5++, Primer-EZ
# and Primer, each trained on one TPU slice with the authors' released settings
# (gin/objectives/lm_as_released.gin: a random chunk of at most 65,536 tokens per
# document, cut into 512-token targets, 65,536 tokens a batch, Adafactor,
# lr = 1/sqrt(max(step, 10^4)), no dropout; T5's vocabulary, gin/vocabularies/t5.gin)
# and then perplexity-evaluated on every checkpoint.
#
#   launch/recipes/paper_lm.sh --corpus c4|c4_v301|lm1b|pg19 --name NAME --zone ZONE \
#       --project PROJECT --bucket gs://BUCKET [--size SIZE] [--mesh MESH] \
#       [--train_steps N] [--primer as_released|design|both] [--cache gs://...|none]
#       [--dry_run]
#
# Defaults are the release's (its README and gin files):
#   --size      the paper's size for the corpus: lm1b small, c4 large, pg19 medium
#   --mesh      v3_8 for small and medium, v3_8_mp2 (2-way model parallel) for large;
#               required for any other size
#   --train_steps  1,000,000, bound explicitly (utils.run.train_steps), never
#               mesh-tensorflow's automatic count
#   microbatches of 8,192 tokens per replica
#               (utils.serialize_num_microbatches.tokens_per_microbatch_per_replica).
#               The planner counts activations at that microbatch, so tpu.sh's plan
#               check stops a run where even 8,192 tokens do not fit; a smaller one
#               is --gin_param with that binding (yours come after the recipe's).
#   --cache     tpu.sh's: the pre-tokenized cache that a multi-host mesh reads
#               (default gs://BUCKET/cache there; build it first with tpu.sh cache)
#   --primer    as_released (default): Primer as the authors' release ran it
#               (gin/models/primer_as_released.gin: its conv, and the pre/post norm
#               that never took effect there), which is what reproduces the release's
#               numbers; design: the paper's design (gin/models/primer.gin); both:
#               the two, under their own run names
# c4 is c4/en:3.1.0, which the pinned TFDS builds; c4_v301 is the paper's 3.0.1, read
# from prepared files. The wrappers c4_lm.sh, lm1b_lm.sh and pg19_lm.sh fix --corpus.
#
# One command sequence: create the slice and install (tpu.sh create,install), then
# for each model train and evaluate every checkpoint after training (eval never
# shares the slice with a training job), and delete the slice after the last one.
# Runs are gs://BUCKET/runs/paper_<corpus>_<size>_<model>. Before anything is
# created, every model's plan is checked on the mesh.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=launch/common.sh
source launch/common.sh

# shellcheck disable=SC2034  # the flags are read back through ${!flag}
size="" mesh="" corpus="" name="" zone="" project="" bucket="" train_steps="" tfds_data_dir="" vocabulary="" accelerator="" runtime="" cache="" primer=as_released
flags=(size mesh corpus name zone project bucket train_steps tfds_data_dir vocabulary
       accelerator runtime cache)
parse_flags "${flags[@]}" primer -- "$@"
case "$primer" in
  as_released) primers=(primer_as_released) ;;
  design) primers=(primer) ;;
  both) primers=(primer_as_released primer) ;;
  *) die "--primer is as_released (the release's Primer, the default), design (the paper's) or both" ;;
esac

case "$corpus" in
  lm1b) size="${size:-small}" ;;
  c4|c4_v301) size="${size:-large}" ;;
  pg19) size="${size:-medium}" ;;
  *) die "--corpus is one of the paper's: c4, c4_v301, lm1b or pg19" ;;
esac
if [ -z "$mesh" ]; then
  case "$size" in
    small|medium) mesh=v3_8 ;;
    large) mesh=v3_8_mp2 ;;
    *) die "--mesh MESH is required for --size $size (see the README's recommended pairs)" ;;
  esac
fi
train_steps="${train_steps:-1000000}"

forward=(--objective lm_as_released)   # every flag given, for tpu.sh
for flag in "${flags[@]}"; do
  [ -z "${!flag}" ] || forward+=("--$flag" "${!flag}")
done
forward+=(--gin_param "utils.serialize_num_microbatches.tokens_per_microbatch_per_replica = 8192")
for p in "${gin_params[@]+"${gin_params[@]}"}"; do forward+=(--gin_param "$p"); done

models=(transformer transformer_plusplus primer_ez "${primers[@]}")
tpu() {  # COMMANDS MODEL: one tpu.sh call for one model's run
  bash launch/tpu.sh "$1" --model "$2" --run "paper_${corpus}_${size}_$2" "${forward[@]}" "${@:3}"
}
if [ "$dry_run" = 0 ]; then
  for model in "${models[@]}"; do tpu train "$model" --dry_run > /dev/null; done
else
  forward+=(--dry_run)
fi
last=$((${#models[@]} - 1))
for i in "${!models[@]}"; do
  commands=train,eval
  [ "$i" != 0 ] || commands="create,install,$commands"
  [ "$i" != "$last" ] || commands="$commands,delete"
  tpu "$commands" "${models[$i]}"
done
