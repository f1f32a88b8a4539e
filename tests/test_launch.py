"""Launch scripts: shellcheck-clean, exact dry runs, and early refusals."""
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import pytest

from primer_mtf.planning import planner

from conftest import REPO

TPU_PAIRS = [(s, m) for s, m in planner.RECOMMENDED if m.startswith(("v3", "v4"))]
ENV = dict(os.environ, PRIMER_MTF_PYTHON=sys.executable)


def launch(script, *args):
  return subprocess.run(["bash", os.path.join(REPO, "launch", script), *args],
                        capture_output=True, text=True, env=ENV, timeout=300)


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


def _tpu(command, size, mesh, *extra):
  return launch("tpu.sh", command, "--name", "primer", "--zone", "us-central2-b",
                "--project", "proj", "--bucket", "gs://bkt", "--model", "primer",
                "--size", size, "--mesh", mesh, "--dry_run", *extra)


def _cores(topology):
  kind, n = topology.split("-")
  return int(n) // (2 if kind == "v4" else 1)  # v4: one megacore device a chip


@graph
@pytest.mark.parametrize("size, mesh", TPU_PAIRS)
def test_tpu_dry_runs_of_every_recommended_pair(size, mesh):
  plan = planner.plan("primer", size, mesh)
  create = _tpu("create", size, mesh)
  assert create.returncode == 0, create.stderr
  argv = shlex.split(create.stdout)
  accelerator_type = argv[argv.index("--accelerator-type") + 1]
  assert accelerator_type == plan["tpu_topology"]
  assert plan["cores"] == _cores(accelerator_type)       # mesh size == slice
  assert argv[argv.index("--version") + 1].startswith("tpu-vm-tf-2.15")
  _check_remote(_tpu("train", size, mesh), size, mesh)


def _check_remote(result, size, mesh):
  assert result.returncode == 0, result.stderr
  argv = shlex.split(result.stdout)
  assert argv[argv.index("ssh") + 1] == "primer" and "--worker=all" in argv
  remote = argv[argv.index("--command") + 1]
  assert re.search(r"--model_dir=gs://bkt/runs/\S+", remote)
  assert f"--gin_file=meshes/{mesh}.gin" in remote
  assert f"--gin_file=sizes/{size}.gin" in remote
  return remote


@graph
def test_tpu_eval_finetune_install_and_delete_dry_runs():
  remote = _check_remote(_tpu("eval", "xl", "v4_32_mp4"), "xl", "v4_32_mp4")
  assert "--gin_file=eval/perplexity.gin" in remote
  remote = _check_remote(
      _tpu("finetune", "xl", "v4_32_mp4", "--init_checkpoint",
           "gs://bkt/runs/base/model.ckpt-1000"), "xl", "v4_32_mp4")
  assert "utils.run.init_checkpoint" in remote and "model.ckpt-1000" in remote
  install = _tpu("install", "xl", "v4_32_mp4")
  assert "--worker=all" in install.stdout and "launch/install.sh" in install.stdout
  delete = _tpu("delete", "xl", "v4_32_mp4")
  assert shlex.split(delete.stdout)[4:7] == ["delete", "primer", "--quiet"]
  create = _tpu("create", "xl", "v4_32_mp4")
  for result in (create, install, delete):
    _gcloud_parses(result.stdout)


def _gcloud_parses(commands):
  """Each printed gcloud line gets past gcloud's parser: with an empty config it
  stops at authentication (exit 1), not at a usage error (exit 2)."""
  if not shutil.which("gcloud"):
    pytest.skip("the Google Cloud CLI is not installed")
  for line in commands.splitlines():
    argv = shlex.split(line)
    if argv[0] != "gcloud":
      continue
    with tempfile.TemporaryDirectory() as config:
      result = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, CLOUDSDK_CONFIG=config))
    assert result.returncode != 2 and "active account" in result.stderr, (
        line, result.stderr[-500:])


@graph
@pytest.mark.parametrize("args, message", [
    (("--size", "32b", "--mesh", "v3_512_mp16"), "more than the 16 GiB"),
    (("--size", "xl", "--mesh", "v3_32_mp4", "--gin_param", "num_heads = 6"),
     "does not divide over mesh dimension model:4"),
    (("--size", "xl", "--mesh", "v3_32_mp4", "--accelerator", "v3-8"),
     "needs a v3-32 slice, not v3-8"),
    (("--size", "xl", "--mesh", "cpu_2x2"), "is not a TPU mesh"),
])
def test_bad_tpu_launches_stop_before_anything_runs(args, message):
  result = launch("tpu.sh", "create", "--name", "n", "--zone", "z", "--project", "p",
                  "--bucket", "gs://b", "--model", "primer", *args)
  assert result.returncode == 2 and result.stdout == ""
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.parametrize("bucket_args, message", [
    ((), "--bucket gs://BUCKET is required"),
    (("--bucket", "/local/dir"), "must be a gs:// path"),
])
def test_tpu_launch_needs_a_bucket(bucket_args, message):
  result = launch("tpu.sh", "train", "--name", "n", "--zone", "z", "--project", "p",
                  "--size", "small", "--mesh", "v3_8", "--dry_run", *bucket_args)
  assert result.returncode == 2 and message in result.stderr and result.stdout == ""


@graph
def test_gpu_and_local_dry_runs():
  gpu = launch("gpu.sh", "train", "--mesh", "gpu_a100_8_mp4", "--size", "large",
               "--model_dir", "/runs/large", "--dry_run")
  assert gpu.returncode == 0, gpu.stderr
  assert "primer_mtf train --model_dir /runs/large --model primer --size large " \
         "--mesh gpu_a100_8_mp4" in gpu.stdout
  local = launch("local.sh", "--model_dir", "/tmp/run", "--mesh", "cpu_2x2",
                 "--dry_run")
  assert local.returncode == 0, local.stderr
  assert [line.split()[3] for line in local.stdout.splitlines()] == ["train", "eval"]


@graph
def test_paper_recipe_trains_and_evaluates_the_four_models():
  result = subprocess.run(
      ["bash", os.path.join(REPO, "launch", "recipes", "c4_lm.sh"), "--size", "large",
       "--mesh", "v3_8_mp2", "--name", "n", "--zone", "z", "--project", "p",
       "--bucket", "gs://bkt", "--dry_run"],
      capture_output=True, text=True, env=ENV, timeout=600)
  assert result.returncode == 0, result.stderr
  argvs = [shlex.split(line) for line in result.stdout.splitlines()]
  remotes = [argv[argv.index("--command") + 1] for argv in argvs]
  models = [re.search(r"--gin_file=models/(\w+)\.gin", r).group(1) for r in remotes]
  assert models == [m for m in ("transformer", "transformer_plusplus", "primer_ez",
                                "primer") for _ in (0, 1)]
  for i, remote in enumerate(remotes):
    assert "corpus_task.corpus" in remote and "c4" in remote
    assert ("eval/perplexity.gin" in remote) == (i % 2 == 1)
    # the corpus (from c4_lm.sh) and the size, parsed once before the loop
    assert f"--model_dir=gs://bkt/runs/paper_c4_large_{models[i]} " in remote


@pytest.mark.parametrize("script, args", [
    ("tpu.sh", ("train", "--name", "n", "--zone", "z", "--project", "p",
                "--bucket", "gs://b", "--mesh", "v3_8", "--zonee", "x")),
    ("gpu.sh", ("train", "--mesh", "gpu_a100_8", "--model_dir", "/r", "--zonee", "x")),
    ("local.sh", ("--model_dir", "/r", "--zonee", "x")),
    ("recipes/c4_lm.sh", ("--size", "large", "--zonee", "x")),
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


@graph
def test_local_defaults_to_the_one_device_cpu_mesh():
  local = launch("local.sh", "--model_dir", "/tmp/run", "--dry_run")
  assert local.returncode == 0, local.stderr
  train = shlex.split(local.stdout.splitlines()[0])
  assert train[train.index("--mesh") + 1] == "cpu"
  assert train[train.index("--corpus") + 1] == "kjv"
