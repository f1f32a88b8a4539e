"""``primer-mtf cache``: builds a task's pre-tokenized cache (see
:mod:`primer_mtf.data.cache`) with Beam's DirectRunner here, or submits the same
job to Google Cloud Dataflow for a corpus one machine cannot tokenize (C4)."""

import logging
import os
import re
import sys

from primer_mtf import configs
from primer_mtf.data import corpus as corpus_lib
from primer_mtf.errors import UsageError

DATAFLOW_DOCS = "https://cloud.google.com/dataflow/docs/guides/setting-pipeline-options"


def spec_of(args):
  """The task to cache, from the same flags and gin that ``train`` parses."""
  from primer_mtf.data import cache as cache_lib  # pylint: disable=g-import-not-at-top
  from primer_mtf.data import tasks  # pylint: disable=g-import-not-at-top
  from primer_mtf.commands import runs  # pylint: disable=g-import-not-at-top
  # any model of the objective's kind: only the task's settings are read
  encoder_decoder = tasks.OBJECTIVE_FILES.get(
      args.objective) in tasks.ENCODER_DECODER_OBJECTIVES
  model = "bi/transformer" if encoder_decoder else "transformer"
  record = runs.make_record(model, "tiny", "cpu", args.corpus,
                            args.vocab_size, args.vocabulary, args.tfds_data_dir,
                            gin_param=args.gin_param, objective=args.objective)
  runs.parse(record)
  vocabulary = configs.query("corpus_task.vocabulary")
  if vocabulary and "://" not in vocabulary:
    vocabulary = os.path.abspath(vocabulary)
  spec = cache_lib.lm_spec(
      record["corpus"], configs.query("corpus_task.vocab_size", args.vocab_size),
      vocabulary, args.tfds_data_dir, configs.query("corpus_task.extra_ids", 0),
      configs.query("corpus_task.objective", "eos_per_document"))
  if args.task:
    if os.path.isdir(args.task):
      args.task = os.path.abspath(args.task)
    spec = cache_lib.text2text_spec(args.task, spec)
  if args.runner == "dataflow":
    check_reachable_by_workers(spec)
  return spec


def check_reachable_by_workers(spec):
  """Dataflow's workers read the vocabulary and the corpus themselves: both must
  be on a bucket (or the corpus a TFDS one), never a path of this machine, and a
  vocabulary is given, not trained by every worker."""
  lm = spec.get("lm", spec)
  if not (lm["vocabulary"] or "").startswith("gs://"):
    raise UsageError("--runner dataflow needs a vocabulary on a bucket: "
                     "--vocabulary gs://.../spm.model, or T5's with "
                     "--gin_param \"include 'vocabularies/t5.gin'\"")
  if lm["corpus"] not in corpus_lib.TFDS_CORPORA:
    known = ", ".join(corpus_lib.TFDS_CORPORA)
    raise UsageError(f"--runner dataflow reads TFDS corpora ({known}); cache "
                     f"{lm['corpus']} with the DirectRunner")
  if spec["kind"] == "text2text" and os.path.isdir(spec["task"]):
    raise UsageError("--runner dataflow cannot read the task folder "
                     f"{spec['task']}; cache it with the DirectRunner")


def check_dataflow_flags(args):
  """Dataflow's flags, before anything (a vocabulary among it) is made."""
  if not args.worker_image:
    raise UsageError("--runner dataflow needs --worker_image: build "
                     "launch/dataflow/Dockerfile and push it (see the README)")
  missing = [f"--{k}" for k in ("project", "region", "temp_location")
             if not getattr(args, k)]
  if missing:
    raise UsageError(f"--runner dataflow needs {', '.join(missing)} (see {DATAFLOW_DOCS})")
  for flag in ("output", "temp_location"):
    if not getattr(args, flag).startswith("gs://"):
      raise UsageError(f"--{flag} {getattr(args, flag)} is not a gs:// path; "
                       "Dataflow workers write to Cloud Storage")


def pipeline_args(args, task_name):
  """Beam's options for the runner (Dataflow's flags checked already)."""
  if args.runner == "direct":
    return ["--runner=DirectRunner"]
  job = re.sub(r"[^a-z0-9-]", "-", f"primer-mtf-cache-{task_name}".lower())[:63]
  options = ["--runner=DataflowRunner", f"--project={args.project}",
             f"--region={args.region}", f"--temp_location={args.temp_location}",
             f"--job_name={job.rstrip('-')}",
             # the workers run the image of launch/dataflow/Dockerfile: the
             # lock's stack and primer-mtf, on Beam's SDK image
             f"--sdk_container_image={args.worker_image}",
             "--experiments=use_runner_v2"]
  if args.max_num_workers:
    options.append(f"--max_num_workers={args.max_num_workers}")
  return options


def cache(args):
  """Checks everything, then builds the cache (or prints the job's options)."""
  from primer_mtf.data import cache as cache_lib  # pylint: disable=g-import-not-at-top
  if args.runner == "dataflow":
    check_dataflow_flags(args)
  spec = spec_of(args)
  if args.runner == "dataflow" and args.dry_run:
    # named without reading the corpus: its TFDS data is on the bucket
    from primer_mtf.data import tasks  # pylint: disable=g-import-not-at-top
    lm = spec.get("lm", spec)
    name = tasks.task_name(lm["corpus"], os.path.basename(lm["vocabulary"]).split(".")[0],
                           lm["extra_ids"], lm["objective"])
  else:
    name = cache_lib.register(spec)
  options = pipeline_args(args, name)
  if args.output.startswith("gs://") and args.runner == "direct":
    print("[cache] note: DirectRunner writes to the bucket from this machine; "
          "use --runner dataflow for a large corpus", file=sys.stderr)
  try:
    import apache_beam as beam  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UsageError("Apache Beam is not installed; run launch/install.sh "
                     "(it is in requirements.lock)") from None
  if not args.verbose:   # Beam's advice about its own transforms, at every run
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
  if args.dry_run:
    beam.options.pipeline_options.PipelineOptions(options).get_all_options(
        retain_unknown_options=False)
    print(f"[cache] task {name}")
    print(f"[cache] into {cache_lib.task_dir(args.output, name)}")
    print(f"[cache] Beam options {' '.join(options)}")
    return
  cache_lib.check_absent(args.output, name, args.overwrite)
  print(f"[cache] {name}: tokenizing with seqio's cache job on "
        f"{options[0].split('=')[1]} into {args.output}", file=sys.stderr, flush=True)
  folder, seconds = cache_lib.build(spec, name, args.output, options,
                                    args.min_shards, args.tfds_data_dir, args.overwrite)
  size = cache_lib.size_bytes(folder)
  print(f"[cache] wrote {folder}: {size / 2**20:.1f} MiB in {seconds:.0f} s")
  if args.task:
    print(f"[cache] fine-tune from it: primer-mtf finetune --task {args.task} "
          f"--cache {args.output} --pretrained_dir RUN --model_dir OUT ...")
  else:
    from primer_mtf.data import tasks  # pylint: disable=g-import-not-at-top
    flags = tasks.task_flags(spec["vocab_size"], spec["vocabulary"], spec["objective"])
    print(f"[cache] train from it: primer-mtf train --corpus {spec['corpus']} {flags} "
          f"--cache {args.output} --model_dir RUN")
