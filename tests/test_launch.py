"""Launch scripts: shellcheck-clean, exact dry runs that gcloud parses, early refusals,
and a lock whose Cloud TPU resolver fails only for want of credentials or network."""
import concurrent.futures
import glob
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

from primer_mtf.planning import planner

from conftest import REPO

TPU_PAIRS = [(s, m) for s, m in planner.RECOMMENDED if m.startswith(("v3", "v4"))]
ENV = dict(os.environ, PRIMER_MTF_PYTHON=sys.executable, TMPDIR="/tmp")


def launch(script, *args):
  return subprocess.run(["bash", os.path.join(REPO, "launch", script), *args],
                        capture_output=True, text=True, env=ENV, timeout=900)


# Tests that run a script past its flags run `primer-mtf plan`, which builds the
# model's graph: they are in the graph tier.
graph = pytest.mark.graph


def test_scripts_pass_shellcheck():
  shellcheck = shutil.which("shellcheck") or os.path.join(
      os.path.dirname(sys.executable), "shellcheck")
  scripts = sorted(glob.glob(os.path.join(REPO, "launch", "*.sh")) +
                   glob.glob(os.path.join(REPO, "launch", "recipes", "*.sh")))
  assert len(scripts) == 9
  result = subprocess.run([shellcheck, "-x", *scripts], capture_output=True, text=True,
                          cwd=REPO)
  assert result.returncode == 0, result.stdout


# The README's placeholders, so that its v4-32 example is one of these dry runs.
TPU_FLAGS = ("--name", "primer-xl", "--zone", "us-central2-b", "--project", "my-project",
             "--bucket", "gs://my-bucket", "--model", "primer")


def _tpu_args(commands, size, mesh, *extra):
  return [commands, *TPU_FLAGS, "--size", size, "--mesh", mesh, "--dry_run", *extra]


BAD_TPU_LAUNCHES = {
    ("--size", "32b", "--mesh", "v3_512_mp16"): "more than the 16 GiB",
    ("--size", "xl", "--mesh", "v3_32_mp4", "--gin_param", "num_heads = 6"):
        "does not divide over mesh dimension model:4",
    ("--size", "xl", "--mesh", "v3_32_mp4", "--accelerator", "v3-8"):
        "needs a v3-32 slice, not v3-8",
    ("--size", "xl", "--mesh", "cpu_2x2"): "is not a TPU mesh",
}

# Every dry run that gets past the flags runs `primer-mtf plan` (a TensorFlow import
# and a graph build, seconds each): they run once, two at a time, for all the tests.
# A whole sequence on several hosts: tpu.sh run on a v4-32 (the README's example);
# on one host: the paper recipe's v3-8. Which image each slice gets is
# slice_runtime's, tested alone below.
DRY_RUNS = {
    "v4-32": ("tpu.sh", *_tpu_args("run", "xl", "v4_32_mp4")),
    "finetune,eval": ("tpu.sh", *_tpu_args(
        "finetune,eval", "small", "v3_8", "--init_checkpoint",
        "gs://my-bucket/runs/base/model.ckpt-1000", "--task", "glue_cola_v002",
        "--format", "prefix", "--finetune_steps", "5", "--run", "cola",
        "--gin_param", "mesh_eval_dataset_fn.num_eval_examples = 64")),
    "continuous eval": ("tpu.sh", *_tpu_args("eval", "small", "v3_8", "--checkpoints",
                                             "continuous")),
    "recipe": ("recipes/c4_lm.sh", *TPU_FLAGS[:-2], "--dry_run"),
    "recipe, both primers": ("recipes/lm1b_lm.sh", *TPU_FLAGS[:-2], "--primer", "both",
                             "--dry_run"),
    "cache": ("tpu.sh", *_tpu_args("cache", "xl", "v4_32_mp4", "--dataflow_image",
                                   "us-docker.pkg.dev/my-project/images/cache")),
    "one host": ("tpu.sh", *_tpu_args("train", "small", "v3_8")),
    "gpu": ("gpu.sh", "train", "--mesh", "gpu_a100_8_mp4", "--size", "large",
            "--model_dir", "/runs/large", "--dry_run"),
    "local": ("local.sh", "--model_dir", "/tmp/run", "--dry_run"),
    **{args: ("tpu.sh", "create", "--name", "n", "--zone", "z", "--project", "p",
              "--bucket", "gs://b", "--model", "primer", *args)
       for args in BAD_TPU_LAUNCHES},
}


@pytest.fixture(scope="module")
def dry_runs():
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    return dict(zip(DRY_RUNS, pool.map(lambda args: launch(*args), DRY_RUNS.values())))


def _argvs(result):
  assert result.returncode == 0, result.stderr
  return [shlex.split(line) for line in result.stdout.splitlines()]


def _remote(argv):
  return argv[argv.index("--command") + 1]


def _assert_one_host_client(remote):
  assert "--tpu=local" in remote and "TPU_NAME" not in remote and "--tpu_zone" not in remote


@graph
def test_run_is_one_sequence_with_one_training_client(dry_runs):
  for topology, (size, mesh) in {"v4-32": ("xl", "v4_32_mp4")}.items():
    argvs = _argvs(dry_runs[topology])
    assert [a[:3] if a[0] == "git" else a[:5] for a in argvs] == [
        ["gcloud", "storage", "buckets", "describe", "gs://my-bucket"],
        ["gcloud", "compute", "tpus", "tpu-vm", "create"],
        ["git", "archive", "--format=tar.gz"],
        ["gcloud", "compute", "tpus", "tpu-vm", "scp"],
        ["gcloud", "compute", "tpus", "tpu-vm", "ssh"],    # install, every worker
        ["gcloud", "compute", "tpus", "tpu-vm", "ssh"],    # train, one client
        ["gcloud", "compute", "tpus", "tpu-vm", "ssh"],    # eval, after training
        ["gcloud", "compute", "tpus", "tpu-vm", "delete"]], topology
    create = argvs[1]
    assert create[create.index("--accelerator-type") + 1] == topology
    assert create[create.index("--version") + 1] == "tpu-vm-tf-2.15.0-pod-se"
    archive = argvs[2][argvs[2].index("--output") + 1]
    assert argvs[2][-1] == "HEAD" and argvs[3][5] == archive
    install = argvs[4]
    assert "--worker=all" in install
    assert _remote(install).endswith("bash launch/install.sh --tensorflow system")
    train, evaluate = argvs[5], argvs[6]
    for argv in (train, evaluate):
      assert "--worker=0" in argv and "--worker=all" not in argv
      remote = _remote(argv)
      # one client drives the whole slice, its workers found through the TPU API
      assert "TPU_NAME=primer-xl TPU_LOAD_LIBRARY=0 " in remote
      assert "--tpu=primer-xl --tpu_zone=us-central2-b --gcp_project=my-project" in remote
      assert f"--gin_file=sizes/{size}.gin --gin_file=meshes/{mesh}.gin" in remote
      assert "--gin_file=objectives/packed_lm.gin" in remote
      assert "--gin_file=vocabularies/t5.gin" in remote
      assert f"--model_dir=gs://my-bucket/runs/primer_{size}" in remote
      # the TPU host cannot tokenize: a multi-host slice reads the cache
      for binding in ('corpus_task.data_cache = "gs://my-bucket/cache"',
                      "mesh_train_dataset_fn.use_cached = True",
                      "mesh_eval_dataset_fn.use_cached = True"):
        assert f"--gin_param={binding}" in shlex.split(remote), binding
    assert "eval/perplexity.gin" not in _remote(train)
    assert "--gin_file=eval/perplexity.gin" in _remote(evaluate)
    assert '--gin_param=utils.run.eval_checkpoint_step = "all"' in \
        shlex.split(_remote(evaluate))
    assert argvs[7][5:8] == ["primer-xl", "--quiet", "--project"]


@graph
@pytest.mark.parametrize("size, mesh", TPU_PAIRS)
def test_every_recommended_tpu_pair_fills_its_slice(size, mesh):
  plan = planner.plan("primer", size, mesh)
  kind, n = plan["tpu_topology"].split("-")
  assert plan["cores"] == int(n) // (2 if kind == "v4" else 1)  # v4: megacore chips


def test_slice_images_follow_the_runtime_docs():
  """v2-v4 stream executor, v5e/v5p PJRT (the only TF images the docs give them);
  -pod for every slice of more than one host."""
  want = {"v3-8": "tpu-vm-tf-2.15.0-se", "v3-32": "tpu-vm-tf-2.15.0-pod-se",
          "v4-8": "tpu-vm-tf-2.15.0-se", "v4-512": "tpu-vm-tf-2.15.0-pod-se",
          "v5litepod-8": "tpu-vm-tf-2.15.0-pjrt",
          "v5litepod-16": "tpu-vm-tf-2.15.0-pod-pjrt",
          "v5p-8": "tpu-vm-tf-2.15.0-pjrt", "v5p-32": "tpu-vm-tf-2.15.0-pod-pjrt"}
  assert _slice_runtimes(*want) == list(want.values())
  result = subprocess.run(["bash", "-c", "source launch/common.sh; slice_runtime v6e-8"],
                          cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 2 and "give --runtime" in result.stderr


@pytest.mark.parametrize("topology, image, message", [
    ("v4-32", "tpu-vm-tf-2.15.0-se", "has several hosts: its --runtime needs -pod"),
    ("v3-8", "tpu-vm-tf-2.15.0-pod-se", "is one host: its --runtime has no -pod"),
    ("v4-8", "tpu-vm-tf-2.16.1-pjrt", "must be a TensorFlow 2.15 TPU VM image"),
])
def test_a_runtime_image_that_does_not_fit_the_slice_is_refused(topology, image,
                                                                 message):
  script = "source launch/common.sh; check_runtime \"$@\""
  result = subprocess.run(["bash", "-c", script, "tpu.sh", topology, image], cwd=REPO,
                          capture_output=True, text=True)
  assert result.returncode == 2 and message in result.stderr and result.stdout == ""
  ok = subprocess.run(["bash", "-c", script, "tpu.sh", topology,
                       _slice_runtimes(topology)[0]], cwd=REPO)
  assert ok.returncode == 0


def _slice_runtimes(*topologies):
  script = "source launch/common.sh; for t; do slice_runtime \"$t\"; done"
  result = subprocess.run(["bash", "-c", script, "-", *topologies], cwd=REPO,
                          capture_output=True, text=True, check=True)
  return result.stdout.split()


@graph
def test_finetune_then_eval_follow_t5s_recipe(dry_runs):
  """The pretrained operative config, the mesh, the format's gin file, then the
  task and the steps; eval decodes (gin/eval/decode.gin) with the same files."""
  argvs = _argvs(dry_runs["finetune,eval"])
  assert len(argvs) == 2 and all("--worker=0" in argv for argv in argvs)
  finetune, evaluate = (shlex.split(_remote(argv)) for argv in argvs)
  _assert_one_host_client(_remote(argvs[0]))
  files = ["--gin_file=gs://my-bucket/runs/base/operative_config.gin",
           "--gin_file=meshes/v3_8.gin", "--gin_file=finetune/prefix.gin"]
  params = ['--gin_param=text2text_task.task = "glue_cola_v002"',
            '--gin_param=utils.run.init_checkpoint = '
            '"gs://my-bucket/runs/base/model.ckpt-1000"',
            "--gin_param=utils.run.train_steps = 1005",
            # a resume skips only the fine-tuning batches it trained on
            "--gin_param=utils.run.skip_seen_data = True",
            "--gin_param=utils.run.seen_data_init_step = 1000",
            # the pretrained run's cache (if any) holds its LM task, not this one
            "--gin_param=corpus_task.data_cache = None",
            "--gin_param=mesh_train_dataset_fn.use_cached = False",
            "--gin_param=mesh_eval_dataset_fn.use_cached = False",
            "--gin_param=mesh_eval_dataset_fn.num_eval_examples = 64"]
  gin_args = lambda argv: [a for a in argv if a.startswith(("--gin_file", "--gin_param"))]
  assert gin_args(finetune) == files + params
  assert gin_args(evaluate) == (
      files + ["--gin_file=eval/decode.gin",
               '--gin_param=utils.run.eval_checkpoint_step = "all"'] + params)
  assert all("--model_dir=gs://my-bucket/runs/cola" in r for r in (finetune, evaluate))
  # nothing of pretraining's data but the cache it must not read
  assert not any("objectives/" in a or ("corpus_task" in a and "data_cache = None" not in a)
                 for a in finetune + evaluate)


@graph
def test_continuous_eval_runs_alone_waiting_for_checkpoints(dry_runs):
  argvs = _argvs(dry_runs["continuous eval"])
  assert len(argvs) == 1 and "--worker=0" in argvs[0]
  remote = shlex.split(_remote(argvs[0]))
  assert "--gin_param=utils.run.eval_checkpoint_step = None" in remote


def _readme_run():
  """The README's v4-32 xl command (its arguments) and the lines it says it prints."""
  readme = open(os.path.join(REPO, "README.md")).read()
  block = readme.split("<!-- v4-32 xl run -->")[1]
  command = re.search(r"\n    (bash launch/tpu.sh run .*?)\n\n", block, re.S).group(1)
  printed = re.search(r"prints:\n\n(.*?)\n\n", block, re.S).group(1)
  return shlex.split(command)[2:], [line[4:] for line in printed.splitlines()]


def test_the_readme_walks_through_the_v4_32_xl_primer_run():
  args, printed = _readme_run()
  assert args == _tpu_args("run", "xl", "v4_32_mp4")
  assert len(printed) == 8 and printed[-1].startswith("gcloud compute tpus tpu-vm delete")


@graph
def test_the_readme_v4_32_xl_sequence_is_what_tpu_sh_prints(dry_runs):
  assert dry_runs["v4-32"].stdout.splitlines() == _readme_run()[1]


# gcloud's own parser, on every gcloud line a dry run prints. gcloud runs with an
# empty config and home, no prompts, credentials off, and the TPU and storage APIs
# at a closed local port: a line that parses makes its first request there, and is
# stopped at that request; one that does not parse exits 2 ("Invalid choice",
# "unrecognized arguments") before any request.
def _closed_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


CLOSED = f"127.0.0.1:{_closed_port()}"


def _gcloud_outcome(line):
  """('call', detail) where the line reached its API call, else ('usage', detail)."""
  argv = shlex.split(line)
  with tempfile.TemporaryDirectory() as home:
    env = dict(os.environ, HOME=home, CLOUDSDK_CONFIG=os.path.join(home, "gcloud"),
               CLOUDSDK_CORE_DISABLE_PROMPTS="1",
               CLOUDSDK_AUTH_DISABLE_CREDENTIALS="true",
               CLOUDSDK_API_ENDPOINT_OVERRIDES_TPU=f"http://{CLOSED}/",
               CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE=f"http://{CLOSED}/",
               CLOUDSDK_CORE_VERBOSITY="debug",
               CLOUDSDK_CORE_DISABLE_USAGE_REPORTING="true",
               CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK="true")
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env=env) as gcloud:
      seen = []
      for err in gcloud.stderr:
        seen.append(err)
        if "Starting new HTTP" in err:   # the first request: parsing is behind it
          gcloud.kill()
          gcloud.wait()
          return ("call" if err.rstrip().endswith(CLOSED) else "elsewhere", err)
      gcloud.wait(timeout=120)
      return "usage", f"exit {gcloud.returncode}: {''.join(seen)[-600:]}"


def _gcloud_outcomes(lines):
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    return dict(zip(lines, pool.map(_gcloud_outcome, lines)))


def _gcloud_lines(*results):
  """The distinct gcloud lines, two lines being one where they differ only in the
  remote command that `ssh --command` carries (gcloud does not parse it)."""
  lines = {}
  for result in results:
    for line in result.stdout.splitlines():
      if line.startswith("gcloud "):
        argv = shlex.split(line)
        if "--command" in argv:
          argv[argv.index("--command") + 1] = "..."
        lines.setdefault(tuple(argv), line)
  return list(lines.values())


def _needs_gcloud(storage=False):
  if not shutil.which("gcloud"):
    pytest.skip("the Google Cloud CLI (gcloud) is not installed, so the printed "
                "gcloud commands cannot be put through its parser")
  if storage and subprocess.run(["gcloud", "storage", "--help"], capture_output=True,
                                env=dict(os.environ, CLOUDSDK_CORE_DISABLE_PROMPTS="1"),
                                timeout=120).returncode != 0:
    pytest.skip("this gcloud has no `gcloud storage` group, so the printed storage "
                "lines cannot be put through its parser")


@graph
def test_gcloud_parses_every_printed_tpu_vm_command(dry_runs):
  _needs_gcloud()
  lines = [line for line in _gcloud_lines(*dry_runs.values())
           if not line.startswith("gcloud storage ")]
  assert {shlex.split(line)[4] for line in lines} == {"create", "scp", "ssh", "delete"}
  # The other slices' create lines: tpu.sh's create line with slice_runtime's image
  # for each (v5e and v5p have no mesh in gin/meshes yet).
  others = ["v3-32", "v4-8", "v5litepod-8", "v5litepod-16", "v5p-8", "v5p-32"]
  for topology, image in zip(others, _slice_runtimes(*others)):
    lines.append(f"gcloud compute tpus tpu-vm create primer-xl --accelerator-type "
                 f"{topology} --version {image} --project my-project --zone us-central2-b")
  outcomes = _gcloud_outcomes(lines)
  bad = {line: o for line, o in outcomes.items() if o[0] != "call"}
  assert not bad, bad


@graph
def test_gcloud_parses_the_printed_storage_line(dry_runs):
  _needs_gcloud(storage=True)
  lines = [line for line in _gcloud_lines(dry_runs["v4-32"])
           if line.startswith("gcloud storage ")]
  assert len(lines) == 1
  outcome = _gcloud_outcome(lines[0])
  assert outcome[0] == "call", outcome


@graph
def test_the_parse_check_fails_the_old_flag_order(dry_runs):
  """--project/--zone before the tpu-vm subcommand, as tpu.sh once printed them."""
  _needs_gcloud()
  old = [re.sub(r"^(gcloud compute tpus tpu-vm) (\S+)(.*) (--project \S+ --zone \S+)$",
                r"\1 \4 \2\3", line)
         for line in _gcloud_lines(dry_runs["v4-32"]) if "tpu-vm" in line]
  assert len(old) == 5 and all(" tpu-vm --project my-project --zone " in line
                               for line in old)
  outcomes = _gcloud_outcomes(old)
  for line, (kind, detail) in outcomes.items():
    assert kind == "usage" and "exit 2" in detail and "Invalid choice" in detail, line


def test_the_tpu_resolver_fails_only_for_credentials_or_network(tmp_path):
  """With the lock installed, TPUClusterResolver(tpu=NAME, zone, project) has what it
  imports (the Google API client, oauth2client): asking for the slice's workers
  fails for want of credentials, or, given a token, at the TPU API's closed port."""
  code = """
import tensorflow as tf
from oauth2client.client import AccessTokenCredentials
for credentials in ("default", AccessTokenCredentials("not-a-token", "primer-mtf-test")):
  resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
      tpu="primer", zone="us-central2-b", project="proj", credentials=credentials)
  try:
    resolver.cluster_spec()
  except Exception as e:
    print("FAILED", type(e).__module__, type(e).__name__, str(e).splitlines()[0])
"""
  env = {k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
  env.update(HOME=str(tmp_path), NO_GCE_CHECK="True", GCE_METADATA_IP=CLOSED,
             GCE_METADATA_HOST=CLOSED, GCE_METADATA_TIMEOUT="1",
             TPU_API_DISCOVERY_URL=f"http://{CLOSED}/discovery/{{api}}/{{apiVersion}}",
             TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=env,
                          capture_output=True, text=True, timeout=300)
  failures = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
  assert len(failures) == 2, result.stdout + result.stderr
  assert failures[0].startswith("FAILED oauth2client.client "
                                "ApplicationDefaultCredentialsError"), failures
  assert "ConnectionRefusedError" in failures[1], failures


@graph
def test_bad_tpu_launches_stop_before_anything_runs(dry_runs):
  for args, message in BAD_TPU_LAUNCHES.items():
    result = dry_runs[args]
    assert result.returncode == 2 and result.stdout == "", args
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.parametrize("command, args, message", [
    ("train", ("--size", "small"), "--bucket gs://BUCKET is required"),
    ("train", ("--size", "small", "--bucket", "/local/dir"), "must be a gs:// path"),
    ("train", ("--bucket", "gs://b"), "--size SIZE is required"),
    ("train", ("--size", "small", "--bucket", "gs://b", "--tfds_data_dir", "/data"),
     "--tfds_data_dir must be a gs:// path"),
    ("trian", ("--size", "small", "--bucket", "gs://b"), "unknown command 'trian'"),
    ("train,eval", ("--size", "small", "--bucket", "gs://b", "--checkpoints",
                    "continuous"), "on a slice of its own, not after training"),
    ("train", ("--size", "small", "--bucket", "gs://b", "--objective", "lm"),
     "unknown --objective 'lm'"),
    ("finetune", ("--size", "small", "--bucket", "gs://b"),
     "finetune needs --init_checkpoint"),
    ("finetune", ("--size", "small", "--bucket", "gs://b", "--init_checkpoint",
                  "gs://b/runs/base/model.ckpt-10"), "finetune needs --task"),
    ("finetune", ("--size", "small", "--bucket", "gs://b", "--init_checkpoint",
                  "gs://b/runs/base/model.ckpt-10", "--task", "kjv_book",
                  "--format", "text2text"), "unknown --format 'text2text'"),
    ("train,finetune", ("--size", "small", "--bucket", "gs://b", "--init_checkpoint",
                        "gs://b/runs/base/model.ckpt-10", "--task", "kjv_book"),
     "fine-tune into a run of its own"),
])
def test_tpu_flags_are_checked_before_the_planner(command, args, message):
  result = launch("tpu.sh", command, "--name", "n", "--zone", "z", "--project", "p",
                  "--mesh", "v3_8", "--dry_run", *args)
  assert result.returncode == 2 and result.stdout == ""
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and message in lines[0], result.stderr


@graph
def test_gpu_and_local_dry_runs(dry_runs):
  gpu, local = dry_runs["gpu"], dry_runs["local"]
  assert gpu.returncode == 0, gpu.stderr
  assert "primer_mtf train --model_dir /runs/large --model primer --size large " \
         "--mesh gpu_a100_8_mp4" in gpu.stdout
  assert local.returncode == 0, local.stderr
  train, evaluate = (shlex.split(line) for line in local.stdout.splitlines())
  assert (train[3], evaluate[3]) == ("train", "eval")
  assert train[train.index("--mesh") + 1] == "cpu"     # the defaults: one CPU device
  assert train[train.index("--corpus") + 1] == "kjv"


@graph
def test_paper_recipe_defaults_to_the_papers_size_steps_and_microbatches(dry_runs):
  """c4 without --size: large on v3_8_mp2 (the release's), 1,000,000 train steps
  bound explicitly, 8,192-token microbatches, the released objective and T5's
  vocabulary; one slice created, the four models trained and evaluated after
  training, then the slice deleted."""
  argvs = _argvs(dry_runs["recipe"])
  assert [argv[4] for argv in argvs if argv[0] == "gcloud" and argv[1] == "compute"] == \
      ["create", "scp"] + ["ssh"] * 9 + ["delete"]
  create = argvs[1]
  assert create[create.index("--accelerator-type") + 1] == "v3-8"
  assert create[create.index("--version") + 1] == "tpu-vm-tf-2.15.0-se"   # one host
  clients = [argv for argv in argvs if "--worker=0" in argv]
  remotes = [shlex.split(_remote(argv)) for argv in clients]
  models = [re.search(r"--gin_file=models/(\w+)\.gin", " ".join(r)).group(1)
            for r in remotes]
  # Primer as the release ran it, the one that reproduces the release's numbers
  assert models == [m for m in ("transformer", "transformer_plusplus", "primer_ez",
                                "primer_as_released") for _ in (0, 1)]
  for i, remote in enumerate(remotes):
    _assert_one_host_client(_remote(clients[i]))
    assert ("--gin_file=eval/perplexity.gin" in remote) == (i % 2 == 1)
    assert f"--model_dir=gs://my-bucket/runs/paper_c4_large_{models[i]}" in remote
    for arg in ("--gin_file=sizes/large.gin", "--gin_file=meshes/v3_8_mp2.gin",
                "--gin_file=objectives/lm_as_released.gin",
                "--gin_file=vocabularies/t5.gin", '--gin_param=corpus_task.corpus = "c4"',
                "--gin_param=utils.run.train_steps = 1000000",
                "--gin_param=utils.serialize_num_microbatches."
                "tokens_per_microbatch_per_replica = 8192"):
      assert arg in remote, (arg, remote)


@graph
def test_paper_recipe_can_train_both_primers_under_their_own_names(dry_runs):
  remotes = [_remote(a) for a in _argvs(dry_runs["recipe, both primers"])
             if "--worker=0" in a]
  runs = [re.search(r"--model_dir=(\S+)", r).group(1) for r in remotes[::2]]
  assert runs[-2:] == ["gs://my-bucket/runs/paper_lm1b_small_primer_as_released",
                       "gs://my-bucket/runs/paper_lm1b_small_primer"]


@graph
def test_the_cache_step_submits_seqios_job_to_dataflow(dry_runs):
  """tpu.sh cache prints the Dataflow job for the run's corpus, objective and
  vocabulary; a one-host slice tokenizes while training (its host has the op)."""
  (cache,) = _argvs(dry_runs["cache"])
  assert cache[:3] == [".venv-dataflow/bin/primer-mtf", "cache", "--corpus"]
  flags = dict(zip(cache[2::2], cache[3::2]))
  assert flags["--runner"] == "dataflow" and flags["--output"] == "gs://my-bucket/cache"
  assert flags["--region"] == "us-central2" and flags["--corpus"] == "c4"
  assert flags["--temp_location"] == "gs://my-bucket/dataflow/tmp"
  assert flags["--gin_param"] == "include 'vocabularies/t5.gin'"
  (train,) = [a for a in _argvs(dry_runs["one host"]) if "--worker=0" in a]
  assert "use_cached" not in _remote(train) and "data_cache" not in _remote(train)


@graph   # the first case runs the planner
@pytest.mark.parametrize("run, message", [
    ((), "runs/primer_small_finetune_glue_cola_v002"),
    (("--run", "primer_small"), "is in the run gs://.../runs/primer_small itself"),
])
def test_a_finetune_never_writes_into_the_pretraining_run(run, message):
  """Pretraining then fine-tuning the same model and size: the fine-tune gets a
  folder of its own, or is refused before anything (the planner included) runs."""
  result = launch("tpu.sh", "finetune", *TPU_FLAGS, "--size", "small", "--mesh", "v3_8",
                  "--init_checkpoint", "gs://my-bucket/runs/primer_small/model.ckpt-1000",
                  "--task", "glue_cola_v002", "--dry_run", *run)
  if run:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0]
  else:
    assert result.returncode == 0, result.stderr
    assert f"--model_dir=gs://my-bucket/{message}" in result.stdout


@pytest.mark.parametrize("args, message", [
    (("--corpus", "wiki"), "--corpus is one of the paper's"),
    (("--corpus", "lm1b", "--primer", "latest"), "--primer is as_released"),
    (("--corpus", "lm1b", "--size", "xl"), "--mesh MESH is required for --size xl"),
])
def test_paper_recipe_refusals(args, message):
  result = launch("recipes/paper_lm.sh", "--name", "n", "--zone", "z", "--project",
                  "p", "--bucket", "gs://b", "--dry_run", *args)
  assert result.returncode == 2 and result.stdout == ""
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and message in lines[0], result.stderr


def test_install_dry_runs():
  registry = launch("install.sh", "--dry_run")
  assert registry.returncode == 0, registry.stderr
  assert "pip install --quiet --no-deps -r requirements.lock" in registry.stdout
  bad = launch("install.sh", "--tensorflow", "tpu")
  assert bad.returncode == 2 and "--tensorflow is registry" in bad.stderr
  dataflow = launch("install.sh", "--stack", "dataflow", "--dry_run")
  assert dataflow.returncode == 0, dataflow.stderr
  assert "-m venv .venv-dataflow" in dataflow.stdout
  assert "--no-deps -r requirements-dataflow.lock" in dataflow.stdout


def test_install_says_which_package_makes_venvs_before_creating_anything(tmp_path):
  """Debian's python3 without python3.X-venv has no ensurepip."""
  fake = tmp_path / "python3"
  fake.write_text(f"""#!/bin/bash
  for a in "$@"; do case "$a" in *ensurepip*) exit 1 ;; esac; done
  exec {sys.executable} "$@"
  """.replace("\n  ", "\n"))
  fake.chmod(0o755)
  venv = tmp_path / "venv"
  result = subprocess.run(["bash", os.path.join(REPO, "launch", "install.sh")],
                          capture_output=True, text=True, timeout=60,
                          env=dict(ENV, PYTHON=str(fake), PRIMER_MTF_VENV=str(venv)))
  version = "%d.%d" % sys.version_info[:2]
  assert result.returncode == 2 and not venv.exists()
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and f"python{version}-venv" in lines[0], result.stderr


@pytest.mark.parametrize("script, args", [
    ("tpu.sh", ("train", "--name", "n", "--zone", "z", "--project", "p",
                "--bucket", "gs://b", "--mesh", "v3_8", "--zonee", "x")),
    ("gpu.sh", ("train", "--mesh", "gpu_a100_8", "--model_dir", "/r", "--zonee", "x")),
    ("local.sh", ("--model_dir", "/r", "--zonee", "x")),
    ("recipes/c4_lm.sh", ("--size", "large", "--zonee", "x")),
    ("install.sh", ("--zonee", "x")),
])
def test_an_unknown_flag_stops_each_script_before_the_planner(script, args):
  result = launch(script, *args, "--dry_run")
  assert result.returncode == 2 and result.stdout == ""
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "unknown flag --zonee" in lines[0], result.stderr


@pytest.mark.parametrize("flag", ["--model size", "--size=large", "size"])
def test_a_flag_is_known_only_by_its_exact_name(flag):
  result = launch("local.sh", "--model_dir", "/r", flag, "x", "--dry_run")
  assert result.returncode == 2 and result.stdout == ""
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and f"unknown flag {flag};" in lines[0], result.stderr
