#!/usr/bin/env bash
# Runs primer-mtf on a Google Cloud TPU VM slice, the way the paper's T5 runs did:
# T5's t5_mesh_transformer binary with gin files for model, size, mesh and
# objective; checkpoints and TFDS data on a bucket.
#
#   launch/tpu.sh COMMAND --name NAME --zone ZONE --project PROJECT --mesh MESH \
#       --bucket gs://BUCKET [--model primer] [--size xl] [--run RUN] [--dry_run]
#
# COMMAND: create | install | train | eval | finetune | delete
#   create    create the slice the mesh needs (its topology from primer-mtf plan)
#   install   copy this checkout to every worker and run launch/install.sh there
#   train     train MODEL at SIZE on MESH; model dir gs://BUCKET/runs/RUN
#   eval      continuous perplexity eval of that model dir (gin/eval/perplexity.gin)
#   finetune  train from --init_checkpoint CKPT into gs://BUCKET/runs/RUN
#   delete    delete the slice
# Other flags: --corpus (c4, lm1b, pg19; default c4), --tfds_data_dir (default
# gs://BUCKET/tfds), --train_steps N, --vocabulary gs://.../spm.model (default:
# T5's vocabulary, as the paper),
# --runtime VERSION, --gin_param BINDING (repeatable).
# --dry_run prints the exact commands and runs nothing. Every command first checks
# the (model, size, mesh) plan locally, so a layout that does not divide or fit
# stops here, before anything is created.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=launch/common.sh
source launch/common.sh

[ $# -ge 1 ] || die "give a command: create, install, train, eval, finetune or delete"
command="$1"; shift
case "$command" in create|install|train|eval|finetune|delete) ;;
  *) die "unknown command '$command'; use create, install, train, eval, finetune or delete" ;;
esac
model=primer size=tiny mesh="" bucket="" run="" corpus=c4 tfds_data_dir="" train_steps=""
vocabulary="" accelerator="" name="" zone="" project="" runtime="" init_checkpoint=""
parse_flags model size mesh bucket run corpus tfds_data_dir train_steps vocabulary \
  accelerator name zone project runtime init_checkpoint -- "$@"

[ -n "$name" ] || die "--name NAME (the TPU VM) is required"
[ -n "$zone" ] || die "--zone ZONE is required"
[ -n "$project" ] || die "--project PROJECT is required"
[ -n "$bucket" ] || die "--bucket gs://BUCKET is required: checkpoints and data live there"
case "$bucket" in gs://?*) ;; *) die "--bucket must be a gs:// path, not '$bucket'" ;; esac
bucket="${bucket%/}"
[ -n "$mesh" ] || die "--mesh MESH is required; see gin/meshes/"
read_plan "$model" "$size" "$mesh"   # the slice comes from the planner, not from gin files
topology="$plan_topology"
[ -n "$topology" ] || die "mesh '$mesh' is not a TPU mesh; use launch/gpu.sh or launch/local.sh"
if [ -n "$accelerator" ] && [ "$accelerator" != "$topology" ]; then
  die "mesh '$mesh' needs a $topology slice, not $accelerator; pick a mesh of $accelerator"
fi
check_plan   # one clear line and exit 2 where the layout does not divide or fit

model_dir="$bucket/runs/${run:-${model}_${size}}"
tfds_data_dir="${tfds_data_dir:-$bucket/tfds}"
if [ -z "$runtime" ]; then
  case "$topology" in
    v3-8|v4-8) runtime="tpu-vm-tf-2.15.0-se" ;;
    *) runtime="tpu-vm-tf-2.15.0-pod-se" ;;
  esac
fi
tpu_vm() {  # SUBCOMMAND ARG...: gcloud's flags follow the subcommand, or it refuses
  local subcommand="$1"; shift
  run_cmd gcloud compute tpus tpu-vm "$subcommand" "$@" --project "$project" --zone "$zone"
}

on_workers() {  # runs a shell command on every worker of the slice
  tpu_vm ssh "$name" --worker=all --command "$1"
}

binary_command() {  # MODEL_DIR [--gin_file=F | BINDING]...: a t5_mesh_transformer line
  local cmd arg
  cmd="cd primer-mtf && .venv/bin/t5_mesh_transformer --tpu=$name --tpu_zone=$zone"
  cmd+=" --gcp_project=$project --model_dir=$1 --module_import=primer_mtf"
  cmd+=" --gin_location_prefix=gin/ --t5_tfds_data_dir=$tfds_data_dir"
  cmd+=" --gin_file=objectives/packed_lm.gin --gin_file=models/$model.gin"
  cmd+=" --gin_file=sizes/$size.gin --gin_file=meshes/$mesh.gin"
  shift
  for arg in "$@" "${run_params[@]}"; do
    case "$arg" in
      --gin_file=*) cmd+=" $arg" ;;
      *) cmd+=" --gin_param=$(printf '%q' "$arg")" ;;
    esac
  done
  printf '%s' "$cmd"
}

# Every worker must tokenize alike: use one shared vocabulary, by default T5's
# (32,000 pieces, padded to 32,128 as in the paper), never one trained per worker.
vocabulary="${vocabulary:-gs://t5-data/vocabs/cc_all.32000/sentencepiece.model}"
run_params=("corpus_task.corpus = '$corpus'" "corpus_task.tfds_data_dir = '$tfds_data_dir'"
            "corpus_task.vocabulary = '$vocabulary'")
[ -z "$train_steps" ] || run_params+=("utils.run.train_steps = $train_steps")
run_params+=("${gin_params[@]+"${gin_params[@]}"}")

case "$command" in
  create)
    tpu_vm create "$name" --accelerator-type "$topology" --version "$runtime" ;;
  install)
    tpu_vm scp --recurse --worker=all . "$name:primer-mtf"
    on_workers "cd primer-mtf && bash launch/install.sh" ;;
  train)
    on_workers "$(binary_command "$model_dir")" ;;
  eval)
    on_workers "$(binary_command "$model_dir" --gin_file=eval/perplexity.gin)" ;;
  finetune)
    [ -n "$init_checkpoint" ] || die "finetune needs --init_checkpoint gs://.../model.ckpt-N"
    case "$init_checkpoint" in gs://?*) ;; *) die "--init_checkpoint must be a gs:// path" ;; esac
    on_workers "$(binary_command "$model_dir" "utils.run.init_checkpoint = '$init_checkpoint'")" ;;
  delete)
    tpu_vm delete "$name" --quiet ;;
esac
