#!/usr/bin/env bash
# Runs primer-mtf on a Google Cloud TPU VM slice, the way the paper's T5 runs did:
# T5's t5_mesh_transformer binary with gin files for objective, model, size, mesh
# and vocabulary; checkpoints and TFDS data on a bucket.
#
#   launch/tpu.sh COMMAND[,COMMAND...] --name NAME --zone ZONE --project PROJECT \
#       --mesh MESH --size SIZE --bucket gs://BUCKET [--model primer] [--run RUN] \
#       [--dry_run]
#
# COMMAND (several, joined by commas, run in that order):
#   create    check the bucket, then create the slice the mesh needs (its topology
#             from primer-mtf plan) with the TensorFlow 2.15 TPU VM image for it
#   install   ship this checkout's HEAD to every worker and install it there into
#             the image's own TensorFlow (launch/install.sh --tensorflow system)
#   train     train MODEL at SIZE on MESH into gs://BUCKET/runs/RUN, from one client
#   eval      perplexity eval (gin/eval/perplexity.gin) of that run's checkpoints:
#             --checkpoints all (default) evaluates every checkpoint and stops, so
#             it runs after training on the same slice; --checkpoints continuous
#             waits for new ones, beside training, on a slice of its own
#   finetune  fine-tune the checkpoint --init_checkpoint gs://.../runs/PRE/model.ckpt-N
#             on --task (kjv_book, a task folder on the bucket, or a seqio task
#             such as glue_cola_v002) into the run, T5's way: the pretrained run's
#             operative_config.gin, then gin/finetune/FORMAT.gin (--format:
#             delimited or prefix for decoder-only models, encoder_decoder for
#             bi/*), the step count continuing from N for --finetune_steps
#             (default 262,144, T5's), a constant learning rate of 1e-3. With
#             finetune, eval decodes the validation split and scores it with the
#             task's metric (gin/eval/decode.gin) instead of perplexity; so does
#             eval alone given the fine-tuning run's --task and --init_checkpoint.
#   cache     pre-tokenize the corpus for this objective and vocabulary into --cache
#             with seqio's cache job on Google Cloud Dataflow (primer-mtf cache
#             --runner dataflow, from this machine's .venv-dataflow, made by
#             launch/install.sh --stack dataflow; needs --dataflow_image), once per
#             corpus, objective and vocabulary, before training on a multi-host slice
#   delete    delete the slice
#   run       create,install,train,eval,delete
# Other flags: --objective (a file of gin/objectives/, default packed_lm), --corpus
# (default c4), --tfds_data_dir (default gs://BUCKET/tfds), --train_steps N,
# --vocabulary gs://.../spm.model (default gin/vocabularies/t5.gin: T5's, as the
# paper), --runtime IMAGE, --accelerator TYPE (must be the mesh's), --gin_param
# BINDING (repeatable), --cache gs://... (the pre-tokenized cache that train and eval
# read; default gs://BUCKET/cache on a multi-host slice, whose TPU host cannot
# tokenize, and none on one host; --cache none tokenizes while training),
# --dataflow_image IMAGE (the cache job's workers, launch/dataflow/Dockerfile).
# --dry_run prints the exact commands and runs nothing. The (model, size, mesh) plan
# is checked first, so a layout that does not divide or fit stops here, before
# anything is created.
#
# How this follows the Cloud TPU documentation:
# * The image. TensorFlow on a TPU VM must be the TPU build the tpu-vm-tf-* images
#   ship; the PyPI wheel does not drive the TPU
#   (https://github.com/tensorflow/tensorflow/issues/52149). That build of 2.15 is a
#   Python 3.10 (cp310) wheel with libtpu 1.9.0
#   (https://cloud.google.com/vertex-ai/docs/training/training-with-tpu-vm).
#   install therefore makes a venv that sees the image's packages and installs the
#   lock without tensorflow (launch/install.sh). The image per slice: slice_runtime
#   in launch/common.sh, with its sources.
# * One client. A multi-host slice gets a -pod image, and the training (or eval)
#   process runs once, on worker 0, with TPU_NAME set and TPU_LOAD_LIBRARY=0: the
#   TPUClusterResolver finds every worker of the slice through the Cloud TPU API and
#   one TPUEstimator drives them all. That is how Google's TensorFlow-on-TPU tests run
#   pod slices (GoogleCloudPlatform/ml-auto-solutions,
#   dags/solutions_team/configs/tensorflow/solutionsteam_tf_nightly_supported_config.py:
#   all_workers=not is_pod, TPU_LOAD_LIBRARY=0 on pods; on one host --tpu=local and,
#   for PJRT, TF_PLUGGABLE_DEVICE_LIBRARY_PATH=/lib/libtpu.so). --tpu=local is the
#   resolver's name for a TPU attached to this VM
#   (https://www.tensorflow.org/api_docs/python/tf/distribute/cluster_resolver/TPUClusterResolver).
#   Every worker still gets the install (ssh --worker=all,
#   https://cloud.google.com/tpu/docs/managing-tpus-tpu-vm).
# * Eval. A slice runs one TPU program at a time, so eval never shares the slice
#   with a training job: it runs after training (run, and the paper recipes), or
#   continuously on another slice.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=launch/common.sh
source launch/common.sh

usage="use cache, create, install, train, eval, finetune, delete or run (several joined by commas)"
[ $# -ge 1 ] || die "give a command: $usage"
IFS=, read -r -a given <<< "$1"; shift
commands=()
for c in "${given[@]}"; do
  case "$c" in
    cache|create|install|train|eval|finetune|delete) commands+=("$c") ;;
    run) commands+=(create install train eval delete) ;;
    *) die "unknown command '$c'; $usage" ;;
  esac
done
model=primer size="" mesh="" bucket="" run="" corpus=c4 tfds_data_dir="" train_steps=""
vocabulary="" objective=packed_lm accelerator="" name="" zone="" project="" runtime=""
init_checkpoint="" checkpoints=all task="" format="" finetune_steps=262144 cache=""
dataflow_image=""
parse_flags model size mesh bucket run corpus tfds_data_dir train_steps vocabulary \
  objective accelerator name zone project runtime init_checkpoint checkpoints task \
  format finetune_steps cache dataflow_image -- "$@"

[ -n "$name" ] || die "--name NAME (the TPU VM) is required"
[ -n "$zone" ] || die "--zone ZONE is required"
[ -n "$project" ] || die "--project PROJECT is required"
[ -n "$bucket" ] || die "--bucket gs://BUCKET is required: checkpoints and data live there"
case "$bucket" in gs://?*) ;; *) die "--bucket must be a gs:// path, not '$bucket'" ;; esac
bucket="${bucket%/}"
tfds_data_dir="${tfds_data_dir:-$bucket/tfds}"
case "$tfds_data_dir" in gs://?*) ;; *) die "--tfds_data_dir must be a gs:// path: every worker reads it" ;; esac
[ -n "$mesh" ] || die "--mesh MESH is required; see gin/meshes/"
[ -n "$size" ] || die "--size SIZE is required; see gin/sizes/"
[ -f "gin/objectives/$objective.gin" ] || die "unknown --objective '$objective'; see gin/objectives/"
case "$checkpoints" in all|continuous) ;;
  *) die "--checkpoints is all (after training) or continuous (on a slice of its own)" ;;
esac
finetuning=0   # a fine-tuning run: finetune, or eval of one (given its --task)
case " ${commands[*]} " in *" finetune "*) finetuning=1 ;; esac
# --task alone means a fine-tuning run, except for cache (a fine-tuning task's cache)
if [ -n "$task" ] && [ "${commands[*]}" != cache ]; then finetuning=1; fi
if [ "$finetuning" = 1 ]; then
  case " ${commands[*]} " in *" train "*)
    die "train and finetune write one run; fine-tune into a run of its own" ;;
  esac
  case "$init_checkpoint" in gs://?*/model.ckpt-[0-9]*) ;;
    *) die "finetune needs --init_checkpoint gs://.../model.ckpt-N" ;;
  esac
  pretrained_step="${init_checkpoint##*/model.ckpt-}"
  case "$pretrained_step" in *[!0-9]*) die "--init_checkpoint must end in model.ckpt-N" ;; esac
  [ -n "$task" ] || die "finetune needs --task: kjv_book, a task folder or a seqio task"
  case "$finetune_steps" in ""|*[!0-9]*|0) die "--finetune_steps must be a positive integer" ;; esac
  case "$model" in bi/*) format="${format:-encoder_decoder}" ;; *) format="${format:-delimited}" ;; esac
  case "$format" in delimited|prefix|encoder_decoder) ;;
    *) die "unknown --format '$format'; use delimited, prefix or encoder_decoder" ;;
  esac
  # A fine-tuning run never shares the pretraining run's folder: it would resume
  # the pretrained checkpoint and its optimizer state, and overwrite its config.
  run="${run:-${model//\//_}_${size}_finetune_${task##*/}}"
  if [ "${init_checkpoint%/*}" = "$bucket/runs/$run" ]; then
    die "--init_checkpoint is in the run gs://.../runs/$run itself; fine-tune into another --run"
  fi
fi
if [ "$checkpoints" = continuous ]; then
  case " ${commands[*]} " in *" eval "*)
    case " ${commands[*]} " in *" train "*|*" finetune "*)
      die "continuous eval waits for checkpoints forever: run it on a slice of its own, not after training" ;;
    esac ;;
  esac
fi
read_plan "$model" "$size" "$mesh"   # the slice comes from the planner, not from gin files
topology="$plan_topology"
[ -n "$topology" ] || die "mesh '$mesh' is not a TPU mesh; use launch/gpu.sh or launch/local.sh"
if [ -n "$accelerator" ] && [ "$accelerator" != "$topology" ]; then
  die "mesh '$mesh' needs a $topology slice, not $accelerator; pick a mesh of $accelerator"
fi
check_plan   # one clear line and exit 2 where the layout does not divide or fit

if [ -z "$runtime" ]; then runtime=$(slice_runtime "$topology"); fi
check_runtime "$topology" "$runtime"
multi_host=0
if slice_is_multi_host "$topology"; then multi_host=1; fi
model_dir="$bucket/runs/${run:-${model}_${size}}"
# A multi-host slice runs the input pipeline on worker 0's TPU host, which has no
# SentencePiece op (T5's issue #965): it reads a pre-tokenized cache by default.
if [ -z "$cache" ] && [ "$multi_host" = 1 ]; then cache="$bucket/cache"; fi
[ "$cache" != none ] || cache=""
case "$cache" in ""|gs://?*) ;; *) die "--cache must be a gs:// path (every worker reads it) or none" ;; esac
archive="${TMPDIR:-/tmp}/primer-mtf-$name.tar.gz"

tpu_vm() {  # SUBCOMMAND ARG...: gcloud's flags follow the subcommand, or it refuses
  local subcommand="$1"; shift
  run_cmd gcloud compute tpus tpu-vm "$subcommand" "$@" --project "$project" --zone "$zone"
}

# The one client: worker 0; the slice's name and the API on a multi-host slice.
client="cd primer-mtf &&"
if [ "$multi_host" = 1 ]; then
  client+=" TPU_NAME=$name TPU_LOAD_LIBRARY=0"
  tpu_flags="--tpu=$name --tpu_zone=$zone --gcp_project=$project"
else
  case "$runtime" in *-pjrt)
    client+=" NEXT_PLUGGABLE_DEVICE_USE_C_API=true TF_PLUGGABLE_DEVICE_LIBRARY_PATH=/lib/libtpu.so" ;;
  esac
  tpu_flags="--tpu=local"
fi

# Gin strings in double quotes keep the printed commands readable (shell_quote).
run_params=("corpus_task.corpus = \"$corpus\"" "corpus_task.tfds_data_dir = \"$tfds_data_dir\"")
vocabulary_gin=vocabularies/t5.gin   # T5's 32,000 pieces + 100 extra ids, as the paper
if [ -n "$vocabulary" ]; then
  vocabulary_gin=""
  run_params+=("corpus_task.vocabulary = \"$vocabulary\"")
fi
[ -z "$train_steps" ] || run_params+=("utils.run.train_steps = $train_steps")
if [ -n "$cache" ]; then
  run_params+=("corpus_task.data_cache = \"$cache\"" "mesh_train_dataset_fn.use_cached = True"
               "mesh_eval_dataset_fn.use_cached = True")
fi
run_params+=("${gin_params[@]+"${gin_params[@]}"}")

# A run's gin files and bindings: pretraining, or T5's fine-tuning recipe (the
# pretrained operative config, this mesh, the format, then the task and the steps).
run_files=("objectives/$objective.gin" "models/$model.gin" "sizes/$size.gin"
           "meshes/$mesh.gin" ${vocabulary_gin:+"$vocabulary_gin"})
if [ "$finetuning" = 1 ]; then
  run_files=("${init_checkpoint%/*}/operative_config.gin" "meshes/$mesh.gin"
             "finetune/$format.gin")
  run_params=("text2text_task.task = \"$task\""
              "utils.run.init_checkpoint = \"$init_checkpoint\""
              "utils.run.train_steps = $((pretrained_step + finetune_steps))"
              "utils.run.skip_seen_data = True"
              "utils.run.seen_data_init_step = $pretrained_step"
              "corpus_task.data_cache = None")
  # the pretrained run's cache holds its LM task; this task has its own (tpu.sh
  # cache --task) or is tokenized while training
  if [ -n "$cache" ]; then
    run_params+=("text2text_task.data_cache = \"$cache\"" "mesh_train_dataset_fn.use_cached = True"
                 "mesh_eval_dataset_fn.use_cached = True")
  else
    run_params+=("mesh_train_dataset_fn.use_cached = False" "mesh_eval_dataset_fn.use_cached = False")
  fi
  run_params+=("${gin_params[@]+"${gin_params[@]}"}")
fi

on_client() {  # [--gin_file=F | BINDING]...: t5_mesh_transformer on worker 0 alone
  local cmd arg
  cmd="$client .venv/bin/t5_mesh_transformer $tpu_flags --model_dir=$model_dir"
  cmd+=" --module_import=primer_mtf --gin_location_prefix=gin/"
  cmd+=" --t5_tfds_data_dir=$tfds_data_dir"
  for arg in "${run_files[@]/#/--gin_file=}" "$@" "${run_params[@]}"; do
    case "$arg" in
      --gin_file=*) cmd+=" $arg" ;;
      *) cmd+=" $(shell_quote "--gin_param=$arg")" ;;
    esac
  done
  tpu_vm ssh "$name" --worker=0 --command "$cmd"
}

ship() {  # the committed tree (HEAD), untracked files and .venv left behind
  git rev-parse --verify -q HEAD >/dev/null ||
    die "install ships the committed tree (git archive HEAD); run it from a git checkout"
  if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    echo "$(basename "$0"): note: uncommitted changes are not shipped; commit them first" >&2
  fi
  run_cmd git archive --format=tar.gz --output "$archive" HEAD
  tpu_vm scp "$archive" "$name:primer-mtf.tar.gz" --worker=all
  local unpack="rm -rf primer-mtf && mkdir primer-mtf"
  unpack+=" && tar -xzf primer-mtf.tar.gz -C primer-mtf && cd primer-mtf"
  tpu_vm ssh "$name" --worker=all --command "$unpack && bash launch/install.sh --tensorflow system"
}

still_up() {  # on a failed real run that was to delete its slice: say how to
  [ "$?" = 0 ] || echo "$(basename "$0"): the slice $name may still be up (and billed):" \
    "bash launch/tpu.sh delete --name $name --zone $zone --project $project" \
    "--mesh $mesh --size $size --bucket $bucket" >&2
}
if [ "$dry_run" = 0 ]; then
  case " ${commands[*]} " in *" create "*" delete "*) trap still_up EXIT ;; esac
fi
for c in "${commands[@]}"; do
  case "$c" in
    create)
      run_cmd gcloud storage buckets describe "$bucket" --format='value(location)' \
        --project "$project"
      tpu_vm create "$name" --accelerator-type "$topology" --version "$runtime" ;;
    install) ship ;;
    cache)
      [ -n "$cache" ] || die "cache needs --cache gs://... (the default on a multi-host slice)"
      [ -n "$dataflow_image" ] ||
        die "cache needs --dataflow_image: the workers' image, built from launch/dataflow/Dockerfile"
      cache_flags=(--corpus "$corpus" --objective "$objective" --output "$cache"
                   --tfds_data_dir "$tfds_data_dir" --runner dataflow --project "$project"
                   --region "${zone%-*}" --temp_location "$bucket/dataflow/tmp"
                   --worker_image "$dataflow_image")
      [ -z "$task" ] || cache_flags+=(--task "$task")   # a fine-tuning task's cache
      if [ -n "$vocabulary" ]; then cache_flags+=(--vocabulary "$vocabulary")
      else cache_flags+=(--gin_param "include 'vocabularies/t5.gin'"); fi
      # Dataflow's runner needs protobuf 4: its own venv (install.sh --stack dataflow)
      run_cmd .venv-dataflow/bin/primer-mtf cache "${cache_flags[@]}" ;;
    train) on_client ;;
    eval)
      if [ "$checkpoints" = all ]; then step='"all"'; else step=None; fi
      eval_gin=eval/perplexity.gin
      [ "$finetuning" = 0 ] || eval_gin=eval/decode.gin
      on_client "--gin_file=$eval_gin" "utils.run.eval_checkpoint_step = $step" ;;
    finetune) on_client ;;
    delete) tpu_vm delete "$name" --quiet ;;
  esac
done
