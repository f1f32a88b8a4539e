"""Pre-tokenized caches: seqio's Beam job on the DirectRunner, the pod's input
path without tensorflow_text's ops, the same tokens as the uncached pipeline,
training from a cache, and the one-line refusals."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import tensorflow.compat.v1 as tf

import primer_mtf
from primer_mtf.data import pod_input
from primer_mtf.commands import runs

from conftest import REPO, run_cli

pytestmark = pytest.mark.e2e

# A pod's TPU host: this process never loads tensorflow_text's op library (seqio
# imports the Python module; it is served empty, so no op of it is registered).
POD_HOST = """
import sys, types
sys.modules["tensorflow_text"] = types.ModuleType("tensorflow_text")
import primer_mtf
from primer_mtf.commands import runs
from primer_mtf.data import pod_input
import tensorflow.compat.v1 as tf
runs.parse(runs.make_record("transformer", "tiny", "cpu", sys.argv[1], 4096,
                            cache=sys.argv[2] or None))
primer_mtf.corpus_task()
graph_def, features = pod_input.train_input_graph()
ops = pod_input.op_types(graph_def)
with tf.Session(graph=features["targets"].graph) as session:
  batch = session.run(features)
print({"ops": sorted(ops), "foreign": pod_input.foreign_ops(ops),
       "shape": list(batch["targets"].shape), "nonzero": int((batch["targets"] > 0).sum())})
"""


def _ok(result):
  assert result.returncode == 0, result.stderr[-3000:]
  return result


@pytest.fixture(scope="module")
def folder_corpus(tmp_path_factory):
  folder = tmp_path_factory.mktemp("corpus")
  for i in range(12):
    (folder / f"doc{i:02d}.txt").write_text(
        f"Chapter {i}. " + " ".join(f"line {j} of chapter {i}." for j in range(40)))
  return str(folder)


@pytest.fixture(scope="module")
def caches(tmp_path_factory, folder_corpus):
  """The embedded corpus and a local folder, cached with the DirectRunner."""
  out = str(tmp_path_factory.mktemp("caches"))
  kjv = _ok(run_cli("cache", "--output", out))
  assert "[cache] wrote" in kjv.stdout and "MiB in" in kjv.stdout
  _ok(run_cli("cache", "--output", out, "--corpus", folder_corpus, "--vocab_size", "48"))
  return out


def _cached_documents(cache_dir, task_name, split):
  folder = os.path.join(cache_dir, task_name)
  with open(os.path.join(folder, f"info.{split}.json")) as f:
    assert set(json.load(f)["features"]) >= {"targets", "targets_pretokenized"}
  files = sorted(tf.io.gfile.glob(os.path.join(folder, f"{split}.tfrecord-*")))
  spec = {"targets": tf.io.VarLenFeature(tf.int64),
          "targets_pretokenized": tf.io.FixedLenFeature([], tf.string)}
  docs = {}
  for record in tf.data.TFRecordDataset(files):
    ex = tf.io.parse_single_example(record, spec)
    docs[ex["targets_pretokenized"].numpy().decode()] = list(
        tf.sparse.to_dense(ex["targets"]).numpy())
  return docs


def _uncached_documents(corpus, vocab_size, split):
  import seqio  # pylint: disable=g-import-not-at-top
  runs.parse(runs.make_record("transformer", "tiny", "cpu", corpus, vocab_size))
  task = seqio.get_mixture_or_task(primer_mtf.corpus_task())
  ds = task.preprocess_precache(task.source.get_dataset(split, shuffle=False))
  return task.name, {ex["targets_pretokenized"].decode(): list(ex["targets"])
                     for ex in ds.as_numpy_iterator()}


@pytest.mark.parametrize("corpus, vocab_size", [("kjv", 4096), ("folder", 48)])
def test_the_cache_holds_every_document_tokenized_as_the_uncached_pipeline(
    caches, folder_corpus, corpus, vocab_size):
  corpus = folder_corpus if corpus == "folder" else corpus
  for split in ("train", "validation"):
    name, uncached = _uncached_documents(corpus, vocab_size, split)
    cached = _cached_documents(caches, name, split)
    assert len(cached) == len(uncached) > 0
    assert cached == uncached


def test_the_pods_input_path_from_the_cache_needs_no_tensorflow_text(caches):
  result = _ok(subprocess.run([sys.executable, "-c", POD_HOST, "kjv", caches],
                              cwd=REPO, capture_output=True, text=True, timeout=600))
  seen = json.loads(result.stdout.strip().splitlines()[-1].replace("'", '"'))
  assert seen["foreign"] == [] and not set(seen["ops"]) & set(pod_input.SENTENCEPIECE_OPS)
  assert "TFRecordDataset" in seen["ops"]
  assert seen["shape"] == [16, 128] and seen["nonzero"] > 16 * 100


def test_the_uncached_input_path_carries_the_sentencepiece_op():
  """The controls: the same listing finds the op on the tokenizing path, and
  the same pod host cannot even build that path."""
  runs.parse(runs.make_record("transformer", "tiny", "cpu", "kjv", 4096))
  primer_mtf.corpus_task()
  ops = pod_input.op_types(pod_input.train_input_graph()[0])
  assert "SentencepieceOp" in ops and "SentencepieceTokenizeOp" in ops
  host = subprocess.run([sys.executable, "-c", POD_HOST, "kjv", ""], cwd=REPO,
                        capture_output=True, text=True, timeout=600)
  assert host.returncode != 0 and "Sentencepiece" in host.stderr, host.stderr[-2000:]


def test_training_reads_the_cache_and_refuses_a_missing_or_foreign_one(caches, tmp_path):
  run = str(tmp_path / "run")
  _ok(run_cli("train", "--model_dir", run, "--train_steps", "2", "--cache", caches))
  with open(os.path.join(run, "operative_config.gin")) as f:
    config = f.read()
  assert "mesh_train_dataset_fn.use_cached = True" in config
  assert f"corpus_task.data_cache = '{caches}'" in config
  refusals = {
      ("--cache", str(tmp_path / "none")):
          "no complete cache of task primer_mtf_lm_kjv_sp4096 under",
      ("--cache", caches, "--objective", "lm_as_released"):
          "primer-mtf cache --corpus kjv --output",
  }
  tampered = str(tmp_path / "tampered")
  shutil.copytree(caches, tampered)
  spec_path = os.path.join(tampered, "primer_mtf_lm_kjv_sp4096", "primer_mtf_cache.json")
  with open(spec_path) as f:
    spec = json.load(f)
  spec["vocabulary_pieces_sha256"] = "0" * 16
  with open(spec_path, "w") as f:
    json.dump(spec, f)
  refusals[("--cache", tampered)] = "was built with another vocabulary"
  for flags, message in refusals.items():
    new = str(tmp_path / "new")
    result = run_cli("train", "--model_dir", new, *flags)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and message in lines[-1], result.stderr[-2000:]
    assert len([l for l in lines if "error" in l]) == 1 and not os.path.exists(new)
  # a complete cache is not rebuilt by accident
  again = run_cli("cache", "--output", caches)
  assert again.returncode == 2 and "already holds a complete cache" in again.stderr
  assert "tokenizing" not in again.stderr
  # a resume cannot switch between the cache and tokenizing while training
  result = run_cli("train", "--model_dir", run, "--train_steps", "4")
  assert result.returncode == 2 and "cached=True" in result.stderr


def test_the_dataflow_job_is_checked_and_printed_not_run(tmp_path):
  """Dataflow cannot run here: its options go through Beam's own parser."""
  job = ("cache", "--output", "gs://my-bucket/cache", "--runner", "dataflow",
         "--project", "my-project", "--region", "us-central2",
         "--temp_location", "gs://my-bucket/dataflow/tmp",
         "--worker_image", "us-docker.pkg.dev/my-project/images/cache", "--dry_run")
  result = _ok(run_cli(*job, "--corpus", "c4", "--gin_param",
                       "include 'vocabularies/t5.gin'"))
  assert "[cache] task primer_mtf_lm_c4_sentencepiece_x100" in result.stdout
  assert "--runner=DataflowRunner --project=my-project --region=us-central2" in result.stdout
  refusals = {
      ("--corpus", "c4"): "needs a vocabulary on a bucket",   # workers cannot train one
      ("--gin_param", "include 'vocabularies/t5.gin'"): "reads TFDS corpora",  # kjv
  }
  for flags, message in refusals.items():
    bad = run_cli(*job, *flags)
    assert bad.returncode == 2 and message in bad.stderr.strip().splitlines()[-1]
  flag_refusals = {
      ("--output", "gs://b/c", "--worker_image", "i"):
          "needs --project, --region, --temp_location",
      ("--output", "gs://b/c", "--project", "p", "--region", "r",
       "--temp_location", "gs://b/t"): "needs --worker_image",
      ("--output", "caches", "--project", "p", "--region", "r",
       "--temp_location", "gs://b/t", "--worker_image", "i"): "is not a gs:// path",
  }
  for flags, message in flag_refusals.items():
    bad = run_cli("cache", "--runner", "dataflow", "--dry_run", *flags)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and message in lines[0], bad.stderr


def test_a_cached_run_can_resume_from_its_input_checkpoint_instead_of_skipping(
    caches, tmp_path):
  """mesh-tensorflow's other resume: the input pipeline's state saved with each
  checkpoint (a cost that does not grow with the step). It works on the cached
  path (the uncached one holds a Python source that TensorFlow cannot save):
  resumed at step 4, the weights at step 6 equal an uninterrupted run's."""
  flags = ("--cache", caches, "--gin_param", "utils.run.save_checkpoints_steps = 2",
           "--gin_param", "utils.get_variable_dtype.master_dtype = 'float32'",
           "--gin_param", "utils.run.skip_seen_data = False",
           "--gin_param", "utils.run.checkpoint_input_pipeline = True")
  whole, resumed = str(tmp_path / "whole"), str(tmp_path / "resumed")
  _ok(run_cli("train", "--model_dir", whole, "--train_steps", "6", *flags))
  _ok(run_cli("train", "--model_dir", resumed, "--train_steps", "4", *flags))
  _ok(run_cli("train", "--model_dir", resumed, "--train_steps", "6", *flags))
  assert os.path.exists(os.path.join(resumed, "input.ckpt-4.index"))
  a = tf.train.load_checkpoint(os.path.join(whole, "model.ckpt-6"))
  b = tf.train.load_checkpoint(os.path.join(resumed, "model.ckpt-6"))
  names = sorted(a.get_variable_to_shape_map())
  assert names == sorted(b.get_variable_to_shape_map())
  assert all((a.get_tensor(n) == b.get_tensor(n)).all() for n in names)
