"""What exact resume costs: the time to skip the batches of k trained steps.

A resumed run's input skips the batches it already trained on (mesh-tensorflow's
``skip_seen_data``, bound in gin/objectives/packed_lm.gin), so the first batch
after a resume at step k costs producing k batches. This times that first batch
at each k, in a TF1 graph as the estimator builds it, from raw text (tokenizing)
and from a pre-tokenized cache, fits t(k) = t0 + k * c by least squares and
writes the figures, the fit and the projection to a pod run to --out.

    PYTHONPATH=. .venv/bin/python benchmarks/resume_skip.py --cache CACHE_DIR \\
        --steps 1000 10000 100000 --out benchmarks/results
"""

import argparse
import json
import os
import platform
import time

import numpy as np

import primer_mtf
from primer_mtf import configs
from primer_mtf.commands import runs

POD = {"steps": 500_000, "tokens_per_step": 65_536}   # a C4 run at the paper's batch


def first_batch_seconds(cache, skip):
  """Seconds to the first batch of a fresh input pipeline that skips ``skip``
  batches (tiny's 16 x 128 tokens, the embedded corpus)."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  import gin  # pylint: disable=g-import-not-at-top
  runs.parse(runs.make_record("transformer", "tiny", "cpu", "kjv", 4096, cache=cache))
  primer_mtf.corpus_task()
  dataset_fn = gin.query_parameter("utils.run.train_dataset_fn").scoped_configurable_fn
  graph = tf.Graph()
  with graph.as_default():
    ds = dataset_fn(sequence_length=configs.sequence_length(), vocabulary=None,
                    dataset_split="train")
    ds = ds.repeat().batch(configs.batch_sequences(), drop_remainder=True)
    batch = tf.data.make_one_shot_iterator(ds.skip(skip)).get_next()
  with tf.Session(graph=graph) as session:
    start = time.time()
    session.run(batch)
    return time.time() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cache", required=True, help="a `primer-mtf cache` folder "
                      "holding the embedded corpus's packed_lm task")
  parser.add_argument("--steps", type=int, nargs="+", default=[1000, 10000, 100000])
  parser.add_argument("--out", default="benchmarks/results")
  args = parser.parse_args()
  tokens_per_step = 16 * 128
  record = {"setting": "tiny (16 x 128 tokens a step), the embedded KJV, "
                       "packed_lm; one process per pipeline, first batch timed",
            "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
            "tokens_per_step": tokens_per_step, "arms": {}}
  for arm, cache in (("cached", args.cache), ("raw text", None)):
    rows = []
    for k in [0] + args.steps:
      seconds = first_batch_seconds(cache, k)
      rows.append({"skip_steps": k, "seconds": round(seconds, 2)})
      print(f"[resume_skip] {arm}: skip {k:,} steps: {seconds:.1f} s", flush=True)
    k = np.array([r["skip_steps"] for r in rows], float)
    t = np.array([r["seconds"] for r in rows])
    per_step, t0 = np.polyfit(k, t, 1)
    tokens_per_second = tokens_per_step / per_step
    record["arms"][arm] = {
        "rows": rows, "t0_seconds": round(float(t0), 2),
        "seconds_per_step": float(per_step),
        "skipped_tokens_per_second": round(float(tokens_per_second)),
        "pod_projection_hours": round(
            POD["steps"] * POD["tokens_per_step"] / tokens_per_second / 3600, 1)}
  record["pod"] = POD
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, "resume_skip_kjv_tiny.json")
  with open(path + ".tmp", "w") as f:
    json.dump(record, f, indent=1)
  os.replace(path + ".tmp", path)
  print(f"[resume_skip] wrote {path}")


if __name__ == "__main__":
  main()
