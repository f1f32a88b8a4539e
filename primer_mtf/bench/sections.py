"""``primer-mtf bench``'s sections: what each measures, in a table by name.

Every figure is a ratio of two things measured in this one process, interleaved
(``harness``): each round times every arm once, the ratio is taken within the
round, and the figure is the median over rounds with the smallest and largest
round's ratio beside it. Absolute times are kept in the JSON for the record,
never compared across runs.

* ``step``: a training step of Primer-EZ and of Primer over the vanilla
  transformer (same size, batch, mesh); the step is the one ``utils.run`` builds
  from gin (``train_step``). In the same rounds, Primer-EZ with the pack-safe conv
  over the release-style conv (``MDHA.conv_form = "release"``: the same taps, no
  packing mask; it leaks across packed examples and is timed only to price the
  mask), and the XLA-fused conv (the default) over the same conv from mtf's
  shift, multiply and add ops (``"pack_safe"``).
* ``utilisation``: model FLOPs a second (the planner's training FLOPs a step over
  the step time) over the peak FLOPs a second of a large float32 matmul. At
  small, also with mesh-tensorflow's stock attention layout, and the step with
  the heads-major layout over the stock one.
* ``profile``: where a step's time goes, each part's share of the summed op time
  of traced steps (``profile``).
* ``pipeline``: tokens a second the training input pipeline delivers (T5's
  ``mesh_train_dataset_fn`` on the embedded corpus's task, packed, batched as
  ``utils.run`` batches) over tokens a second a training step consumes.
* ``decode``: incremental greedy decoding (``decoding``) of Primer-EZ against
  vanilla, and of vanilla against re-running the whole prefix for every token.
* ``sharding``: a step on ``batch:2,model:2`` (four virtual devices) over one
  device, same global batch.
* ``memory``: the planner's memory estimate over measured peak RSS, recorded
  (``records``) or rerun by the checkout's ``benchmarks/planner_memory.py``.
* ``quality``: the recorded compute speedups over T5: six models at tiny
  (``primer-mtf compare --train``, 3 seeds) and Primer-EZ at wider models.
"""
import dataclasses
import json
import os
import statistics
import subprocess
import sys
from typing import Callable

import numpy as np

from primer_mtf import configs
from primer_mtf import files
from primer_mtf.bench import harness
from primer_mtf.bench import records
from primer_mtf.bench.harness import log, ratio, summary
from primer_mtf.bench.report import figure
from primer_mtf.bench.train_step import VOCAB_SIZE, bindings

COMPARE_COMMAND = ("primer-mtf compare --train --models transformer "
                   "transformer_plusplus squared_relu mdha primer_ez primer --seeds 3 "
                   "--output bench/compare_tiny_six")

# What each mode measures. Batches are small: the CPU is the limit, and each
# figure is a ratio of two arms at the same batch.
SETTINGS = {
    "quick": {
        "step": {"size": "tiny", "batch": 8, "length": 128, "models":
                 ["transformer", "primer_ez", "primer"],
                 "conv_forms": ["release", "pack_safe"]},
        "utilisation": [("tiny", 8, 128), ("small", 2, 128)],
        "matmul": 1024,
        "pipeline": [("tiny", 8, 128)],
        "decode": {"sizes": ["tiny"], "naive_size": "tiny", "batch": 4,
                   "prompt": 8, "new_tokens": 256, "bucket": 32},
        "sharding": ("tiny", 8, 128),
        "profile": {"size": "tiny", "batch": 8, "length": 128, "traces": 2,
                    "rounds": 3, "arms": ["transformer", "primer_ez"]},
        "warmup": 2, "rounds": 9, "steps": 2, "decode_rounds": 3, "traces": 2,
        "pipeline_batches": 20,
    },
    "full": {
        "step": {"size": "small", "batch": 8, "length": 512, "models":
                 ["transformer", "primer_ez", "primer"],
                 "conv_forms": ["release", "pack_safe"], "steps": 1},
        "utilisation": [("tiny", 8, 128), ("small", 8, 512), ("medium", 2, 512)],
        "matmul": 2048,
        "pipeline": [("tiny", 8, 128), ("small", 2, 256)],
        "decode": {"sizes": ["tiny", "small"], "naive_size": "tiny", "batch": 4,
                   "prompt": 8, "new_tokens": 256, "bucket": 32},
        "sharding": ("small", 2, 256),
        "profile": {"size": "small", "batch": 8, "length": 512, "traces": 3,
                    "rounds": 5, "arms": ["transformer", "primer_ez",
                                          "primer_ez:release"]},
        "warmup": 2, "rounds": 11, "steps": 2, "decode_rounds": 5, "traces": 5,
        "pipeline_batches": 50,
    },
}


@dataclasses.dataclass
class Context:
  """What a section gets: the mode's settings, the training steps built so far
  (shared, so a step is built once), the output folder, and --memory_sizes."""
  settings: dict
  steps: object
  out: str
  memory_sizes: tuple = ()


# ---------------------------------------------------------------- step overhead


def conv_form_arm(form):
  """The name of the Primer-EZ arm whose MDHA computes its conv as ``form``."""
  return f"primer_ez[conv_form={form}]"


def step_overhead(ctx):
  s, steps = ctx.settings, ctx.steps
  cfg = s["step"]
  arms = {m: steps.get(m, cfg["size"], cfg["batch"], cfg["length"])
          for m in cfg["models"]}
  for form in cfg.get("conv_forms", ()):
    arms[conv_form_arm(form)] = steps.get(
        "primer_ez", cfg["size"], cfg["batch"], cfg["length"],
        gin_params=[f"MDHA.conv_form = '{form}'"])
  log(f"timing training steps of {', '.join(arms)} ({s['rounds']} rounds)")
  n_steps = cfg.get("steps", s["steps"])
  times = harness.interleave({m: (lambda a=a: a(n_steps)) for m, a in arms.items()},
                             s["rounds"], s["warmup"])
  figures = []
  where = f"({cfg['size']}, {cfg['batch']} x {cfg['length']}, cpu)"
  for m in cfg["models"][1:]:
    r = ratio(times, m, "transformer")
    figures.append(figure(
        f"step_overhead_{m}", f"training step time, {m} / transformer {where}", r,
        target="<= 1.05" if m == "primer_ez" else None,
        met=r["median"] <= 1.05 if m == "primer_ez" else None))
  if "release" in cfg.get("conv_forms", ()):
    figures.append(figure(
        "step_overhead_release_conv", "training step time, primer_ez with the "
        "pack-safe conv (fused) / with the release-style conv (no packing mask, "
        f"leaks) {where}", ratio(times, "primer_ez", conv_form_arm("release"))))
  if "pack_safe" in cfg.get("conv_forms", ()):
    figures.append(figure(
        "step_overhead_fused_conv", "training step time, primer_ez with the "
        "XLA-fused conv / with the same conv from mtf's shift, multiply and add ops "
        f"{where}", ratio(times, "primer_ez", conv_form_arm("pack_safe"))))
  detail = {"settings": cfg, "times": {m: summary(times, m) for m in times},
            "losses_finite": {m: a.finite() for m, a in arms.items()},
            "profile": _extra_by_op_type(arms, s["traces"])}
  return figures, detail


def _extra_by_op_type(arms, traces):
  """Where each arm's extra time over the first goes: traced steps, interleaved;
  for each op type the least time it took over the traces (contention from
  other jobs only adds)."""
  traced = {m: [] for m in arms}
  for _ in range(traces):
    for m in arms:
      traced[m].append(arms[m].profile())
  profiles = {m: {k: min(t.get(k, 0.0) for t in ts)
                  for k in set().union(*ts)} for m, ts in traced.items()}
  first = list(arms)[0]
  base = profiles[first]
  extra = {}
  for m in list(arms)[1:]:
    diff = {k: v - base.get(k, 0.0) for k, v in profiles[m].items()}
    top = sorted(diff.items(), key=lambda kv: -kv[1])[:8]
    extra[m] = {"traced_step_seconds": sum(profiles[m].values()),
                f"{first}_traced_step_seconds": sum(base.values()),
                "extra_seconds_by_op_type": dict(top),
                "op_seconds_by_type": dict(sorted(profiles[m].items(),
                                                  key=lambda kv: -kv[1])[:12])}
  extra[first] = {"op_seconds_by_type": dict(sorted(
      base.items(), key=lambda kv: -kv[1])[:12])}
  extra["traces"] = traces
  return extra


# ---------------------------------------------------------------- utilisation


def matmul_peak(n):
  """A callable running an n x n float32 matmul (5 chained), its FLOPs, and
  its session."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  graph = tf.Graph()
  with graph.as_default():
    rng = np.random.RandomState(0)
    a = tf.Variable(rng.randn(n, n).astype(np.float32) / np.sqrt(n))
    b = tf.Variable(rng.randn(n, n).astype(np.float32))
    x = b
    for _ in range(5):
      x = tf.matmul(a, x)
    out = tf.reduce_sum(x)
    init = tf.global_variables_initializer()
  session = tf.Session(graph=graph)
  session.run(init)
  return (lambda: session.run(out)), 5 * 2 * n ** 3, session


def step_flops(model, size, batch, length, mesh="cpu"):
  from primer_mtf.planning import planner  # pylint: disable=g-import-not-at-top
  plan = planner.plan(model, size, mesh, VOCAB_SIZE, bindings(batch, length))
  return plan["flops_per_step"]


STOCK_LAYOUT = ["primer_mtf.heads_major_attention.enabled = False"]


def utilisation(ctx):
  """Model FLOP/s over peak matmul FLOP/s; at small, also with mesh-tensorflow's
  stock attention layout (layers/attention_layout.py), timed in the same rounds."""
  s, steps = ctx.settings, ctx.steps
  run_matmul, matmul_flops, session = matmul_peak(s["matmul"])
  figures, detail = [], {"matmul_n": s["matmul"]}
  for size, batch, length in s["utilisation"]:
    arms = {"step": steps.get("transformer", size, batch, length),
            "matmul": run_matmul}
    if size == "small":
      arms["stock_layout"] = steps.get("transformer", size, batch, length,
                                       gin_params=STOCK_LAYOUT)
    flops = step_flops("transformer", size, batch, length)
    log(f"timing utilisation at {size} against a {s['matmul']}^2 matmul")
    rounds = s["rounds"] if size != "medium" else 3
    times = harness.interleave(arms, rounds, 1)
    where = f"transformer {size}, {batch} x {length}"

    def used(step_seconds, matmul_seconds, flops=flops):
      return (flops / step_seconds) / (matmul_flops / matmul_seconds)

    r = ratio(times, "step", "matmul", used)
    target = size == "small" and length >= 512
    figures.append(figure(
        f"utilisation_{size}", f"model FLOP/s of a training step / peak matmul "
        f"FLOP/s ({where})", r, target=">= 0.70" if target else None,
        met=r["median"] >= 0.70 if target else None))
    if "stock_layout" in arms:
      figures.append(figure(
          f"utilisation_{size}_stock_layout", "model FLOP/s / peak matmul FLOP/s "
          f"with mesh-tensorflow's stock attention layout ({where})",
          ratio(times, "stock_layout", "matmul", used)))
      figures.append(figure(
          f"attention_layout_{size}", "training step time, heads-major attention "
          f"/ stock layout ({where})", ratio(times, "step", "stock_layout")))
    detail[size] = {"flops_per_step": flops, "matmul_flops": matmul_flops,
                    "step": summary(times, "step"),
                    "matmul": summary(times, "matmul"),
                    "matmul_gflops_per_cpu_second": matmul_flops /
                    statistics.median(times["matmul"]) / 1e9,
                    "matmul_gflops_per_wall_second": matmul_flops /
                    statistics.median(times.wall["matmul"]) / 1e9}
  session.close()
  return figures, detail


# ---------------------------------------------------------------- input pipeline


def pipeline_batches(size, batch, length):
  """A callable pulling one batch from the training input pipeline, as utils.run
  reads it (T5's mesh_train_dataset_fn on the corpus task, packed, batched)."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  from t5.models import mesh_transformer  # pylint: disable=g-import-not-at-top
  from primer_mtf.data import tasks  # pylint: disable=g-import-not-at-top
  configs.parse("transformer", size, "cpu", gin_params=bindings(batch, length))
  graph = tf.Graph()
  with graph.as_default():
    name = tasks.corpus_task()
    ds = mesh_transformer.mesh_train_dataset_fn(
        name, {"inputs": length, "targets": length}, seed=1234)
    ds = ds.batch(batch, drop_remainder=True)
    nxt = tf.data.make_one_shot_iterator(ds).get_next()
  session = tf.Session(graph=graph)
  return (lambda: session.run(nxt)), session


def input_pipeline(ctx):
  s, steps = ctx.settings, ctx.steps
  figures, detail = [], {}
  k = s["pipeline_batches"]
  for size, batch, length in s["pipeline"]:
    pull, session = pipeline_batches(size, batch, length)
    step = steps.get("transformer", size, batch, length)
    log(f"timing the input pipeline against training at {size}")
    for _ in range(k):   # fill the shuffle buffers, load the vocabulary
      pull()
    n_steps = max(1, s["steps"])

    def pull_k():
      for _ in range(k):
        pull()

    times = harness.interleave({"pipeline": pull_k,
                                "train": lambda: step(n_steps)}, s["rounds"], 1)
    # tokens a second: pipeline k batches, training n_steps batches
    r = ratio(times, "pipeline", "train", lambda p, t: (k / p) / (n_steps / t))
    figures.append(figure(
        f"input_pipeline_{size}", f"tokens/s the input pipeline delivers / tokens/s "
        f"training consumes (transformer {size}, {batch} x {length})", r,
        target=">= 10", met=r["median"] >= 10))
    detail[size] = {"batches_per_timing": k, "train_steps_per_timing": n_steps,
                    "tokens_per_batch": batch * length,
                    "pipeline": summary(times, "pipeline"),
                    "train": summary(times, "train")}
    session.close()
  return figures, detail


# ---------------------------------------------------------------- decoding


def decoding(ctx):
  from primer_mtf.bench.decoding import Decoder  # pylint: disable=g-import-not-at-top
  s = ctx.settings
  cfg = s["decode"]
  figures, detail = [], {"settings": cfg}
  for size in cfg["sizes"]:
    dec = {m: Decoder(m, size, cfg["batch"], cfg["prompt"], cfg["new_tokens"])
           for m in ("transformer", "primer_ez")}
    arms = {m: d.incremental() for m, d in dec.items()}
    naive = size == cfg["naive_size"]
    if naive:
      arms["full_prefix"] = dec["transformer"].full_prefix(cfg["bucket"])
    log(f"timing decoding at {size}: {', '.join(arms)}")
    times = harness.interleave(arms, s["decode_rounds"], 1)
    r = ratio(times, "primer_ez", "transformer")
    figures.append(figure(
        f"decode_primer_ez_{size}", f"incremental greedy decoding time, primer_ez / "
        f"transformer ({size}, batch {cfg['batch']}, {cfg['new_tokens']} tokens)",
        r, target="<= 1.15", met=r["median"] <= 1.15))
    if naive:
      r = ratio(times, "full_prefix", "transformer")
      figures.append(figure(
          f"decode_incremental_speedup_{size}", "greedy decoding: time re-running the "
          f"full prefix for each token / incremental (transformer {size}, "
          f"{cfg['new_tokens']} tokens)", r, target=">= 5", met=r["median"] >= 5))
    tokens = cfg["batch"] * cfg["new_tokens"]
    # every row decoded all its tokens (non-zero ids after the prompt)
    decoded, = arms["transformer"]()
    detail[f"{size}_decoded_tokens_per_row"] = [
        int(n) for n in (decoded[:, cfg["prompt"]:] != 0).sum(1)]
    detail[size] = {m: dict(summary(times, m), tokens_per_cpu_second=tokens /
                            statistics.median(times[m]),
                            tokens_per_wall_second=tokens /
                            statistics.median(times.wall[m])) for m in times}
    for d in dec.values():
      d.close()
  return figures, detail


# ---------------------------------------------------------------- sharding


def sharding(ctx):
  s, steps = ctx.settings, ctx.steps
  size, batch, length = s["sharding"]
  one = steps.get("transformer", size, batch, length, "cpu")
  four = steps.get("transformer", size, batch, length, "cpu_2x2")
  log(f"timing one device against batch:2,model:2 at {size}")
  times = harness.interleave({"cpu": lambda: one(s["steps"]),
                              "cpu_2x2": lambda: four(s["steps"])},
                             s["rounds"], s["warmup"])
  r = ratio(times, "cpu_2x2", "cpu")
  return [figure(f"sharding_2x2_{size}", "training step time, batch:2,model:2 "
                 f"(4 virtual devices) / one device (transformer {size}, "
                 f"{batch} x {length})", r)], {
                     "times": {k: summary(times, k) for k in times},
                     "losses_finite": {"cpu": one.finite(), "cpu_2x2": four.finite()}}


# ---------------------------------------------------------------- profile


# what the profile's figures add up, by arm: parts of profile.PARTS
PROFILE_SHARES = {
    "attention": ("attention: projections", "attention: scores QK^T",
                  "attention: weighted values AV", "attention: softmax",
                  "attention: bias, masks, reshapes"),
    "dconv": ("dconv",), "optimizer": ("optimizer",),
    "embedding_and_loss": ("embedding and loss",)}

# shares of traced op time: measured now, with no wall-clock counterpart
TRACED = "traced now"


def profile(ctx):
  """Where a step's time goes (``profile.measure``, written to ``out/profile``):
  each part's share of the summed op time, by arm."""
  from primer_mtf.bench import profile as traced  # pylint: disable=g-import-not-at-top
  cfg = ctx.settings["profile"]
  log(f"tracing training steps of {', '.join(cfg['arms'])} at {cfg['size']}")
  result = traced.measure(ctx.steps, cfg["size"], cfg["batch"], cfg["length"],
                                cfg["arms"], cfg["traces"], cfg["rounds"])
  folder = os.path.join(ctx.out, "profile")
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, "profile_step.json")
  files.write_json(path, dict(result, settings=cfg))
  with files.replaced(os.path.join(folder, "profile_step.md")) as f:
    f.write(traced.markdown(result))
  where = f"{cfg['size']}, {cfg['batch']} x {cfg['length']}"
  figures = []
  for arm, table in result["arms"].items():
    if ":" in arm:
      continue
    for name, parts in PROFILE_SHARES.items():
      share = sum(table["parts"][p]["share"] for p in parts)
      if share > 0:
        figures.append(figure(
            f"profile_{name}_share_{arm}", f"share of a training step's op time: "
            f"{name.replace('_', ' ')} ({arm}, {where})", {"median": share,
                                                            "rounds": cfg["traces"]},
            source=TRACED))
    figures.append(figure(
        f"profile_layout_share_{arm}", "share of a training step's op time: layout "
        f"ops, transposes and reshapes ({arm}, {where})",
        {"median": table["layout_share"], "rounds": cfg["traces"]}, source=TRACED))
  return figures, {"path": path, "settings": cfg}


# ---------------------------------------------------------------- recorded


def memory(ctx):
  """Planner estimate / peak RSS: the recorded figures, or, with --memory_sizes,
  the checkout's ``benchmarks/planner_memory.py`` rerun into ``out``."""
  if ctx.memory_sizes:
    script, root = records.checkout_script("planner_memory.py")
    folder = os.path.join(ctx.out, "planner_memory")
    subprocess.run([sys.executable, script, "--sizes", *ctx.memory_sizes,
                    "--out", folder], check=True,
                   env=dict(os.environ, PYTHONPATH=root))
    path, source = os.path.join(folder, "planner_memory.json"), "measured now"
    with open(path) as f:
      rows = json.load(f)
    where = path
  else:
    rows, path = records.load(records.MEMORY)
    source, where = "recorded", os.path.join(records.COMMITTED, records.MEMORY)
  figures = [figure(
      f"memory_{r['size']}", f"planner memory estimate / measured peak RSS "
      f"(primer {r['size']}, batch 4 x 128, cpu)",
      {"median": r["ratio_planned_to_measured"]}, source=source)
             for r in rows]
  return figures, {"source": where, "read_from": path,
                   "rows": [{k: v for k, v in r.items() if k != "train_log"}
                            for r in rows]}


def quality(ctx):
  """The recorded speedups: every model of the six-model comparison at tiny (3
  seeds), and Primer-EZ's at each width of the scaling study."""
  del ctx
  figures, detail = [], {"sources": [], "read_from": [], "never_reached": []}

  def add(key, what, stats):
    if stats is None:
      detail["never_reached"].append(key)
      return
    figures.append(figure(key, what, {"median": stats["mean"], "min": stats["min"],
                                      "max": stats["max"], "std": stats["std"],
                                      "rounds": stats["n"]}, source="recorded"))

  summary_, path = records.load(records.COMPARE)
  detail["sources"].append(os.path.join(records.COMMITTED, records.COMPARE))
  detail["read_from"].append(path)
  for group, g in summary_["groups"].items():
    if group != summary_["baseline"]:
      add(f"quality_{group}_tiny", "training FLOPs speedup to T5's final validation "
          f"loss, {group} over transformer (tiny, 300 steps, {len(g['runs'])} seeds)",
          g["speedup"]["flops"])
  scaling, path = records.load(records.SCALING)
  detail["sources"].append(os.path.join(records.COMMITTED, records.SCALING))
  detail["read_from"].append(path)
  for row in scaling["widths"]:
    for model, m in row["models"].items():
      if row["d_model"] != 128:    # 128 is tiny, above
        add(f"quality_{model}_d{row['d_model']}", "training FLOPs speedup to T5's "
            f"final validation loss, {model} over transformer (d_model "
            f"{row['d_model']}, 300 steps, {row['seeds']} seeds)",
            m["final_speedup"]["flops"])
  detail["commands"] = [COMPARE_COMMAND, scaling["command"]]
  return figures, detail


# ---------------------------------------------------------------- the table


@dataclasses.dataclass(frozen=True)
class Section:
  """A ``--only`` name and the function that measures it (Context -> figures,
  details)."""
  name: str
  run: Callable


# in the order they run and report
SECTIONS = (
    Section("step", step_overhead),
    Section("utilisation", utilisation),
    Section("profile", profile),
    Section("pipeline", input_pipeline),
    Section("decode", decoding),
    Section("sharding", sharding),
    Section("memory", memory),
    Section("quality", quality),
)
NAMES = tuple(s.name for s in SECTIONS)
