"""``primer-mtf bench``: what Primer costs and buys here, as ratios measured side by side.

Every figure is a ratio of two things measured in this one process, interleaved:
each round times every arm once (the order rotating from round to round), the
ratio is taken within the round, and the figure is the median over rounds (with
the smallest and largest round's ratio beside it). Times are this process's CPU
seconds (all its threads), which other jobs on a shared machine change far less
than wall-clock time; the wall-clock ratios are reported beside them. Absolute
times are kept in the JSON for the record, never compared across runs.

The figures:

* ``step_overhead_*``: a training step of Primer-EZ and of Primer over the vanilla
  transformer (same size, batch, mesh). The step is the one ``utils.run`` builds:
  the gin-configured model (``utils.build_model``) on packed targets with segment
  ids and positions, its loss, ``mtf.gradients``, Adafactor's updates, lowered with
  ``mtf.Lowering`` on a placement mesh; ``session.run`` of the train op on a fixed
  synthetic batch.
* ``step_overhead_release_conv``: in the same rounds, Primer-EZ's training step
  with this code's pack-safe convolution over Primer-EZ with the release-style
  convolution (``MDHA.conv_form = "release"``: the same taps, no packing mask; it
  leaks across packed examples and is timed here only to price the mask).
* ``step_overhead_fused_conv``: Primer-EZ's step with the XLA-fused conv (the
  default, ``layers/fused_dconv.py``) over the same conv from mtf's shift,
  multiply and add ops (``MDHA.conv_form = "pack_safe"``).
* ``utilisation_*``: model FLOPs a second (the planner's training FLOPs a step
  over the step time) over the peak FLOPs a second this TensorFlow reaches on a
  large float32 matmul. At small, the same with mesh-tensorflow's stock attention
  layout, and ``attention_layout_small``: the step with the heads-major layout
  this package installs over the stock one.
* ``input_pipeline_*``: tokens a second the training input pipeline delivers (T5's
  ``mesh_train_dataset_fn`` on the embedded corpus's task, packed, batched as
  ``utils.run`` batches) over tokens a second a training step consumes.
* ``decode_*``: incremental greedy decoding (``Unitransformer.sample_autoregressive``
  as ``primer-mtf sample`` builds it) of Primer-EZ against vanilla, and of vanilla
  against re-running the whole prefix for every new token.
* ``sharding_*``: a step on ``batch:2,model:2`` (four virtual devices) over one
  device, same global batch.
* ``profile_*``: where a training step's time goes, each part's share of the
  summed op time of traced steps (``benchmarks/profile_step.py``).
* ``memory_*``: the planner's memory estimate over measured peak RSS
  (``benchmarks/planner_memory.py``).
* ``quality_*``: the recorded compute speedups over T5: six models at tiny
  (``primer-mtf compare --train``, 3 seeds) and Primer-EZ at wider models
  (``benchmarks/scaling.py``), read from their committed records.
"""

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import mesh_tensorflow as mtf
from mesh_tensorflow import optimize
from mesh_tensorflow.transformer import transformer
from mesh_tensorflow.transformer import utils as mtf_utils
import numpy as np
import tensorflow.compat.v1 as tf

from primer_mtf import configs

VOCAB_SIZE = 4096
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECORDED = os.path.join(REPO, "benchmarks", "results")
COMPARE_RECORD = "compare_tiny_six_models_3_seeds.json"
COMPARE_COMMAND = ("primer-mtf compare --train --models transformer transformer_plusplus "
                   "squared_relu mdha primer_ez primer --seeds 3 --output "
                   "bench/compare_tiny_six")
SCALING_RECORD = "scaling_transformer_primer_ez.json"
MEMORY_RECORD = "planner_memory_tiny_small_medium.json"

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


def log(message):
  print(f"[bench] {message}", file=sys.stderr, flush=True)


def bindings(batch, length):
  return [f"utils.run.sequence_length = {{'inputs': {length}, 'targets': {length}}}",
          f"Unitransformer.max_length = {length}",
          f"utils.run.batch_size = ('sequences_per_batch', {batch})",
          "dropout_rate = 0.0"]


# ---------------------------------------------------------------- timing


class Times(dict):
  """name -> seconds of each round, in CPU time of this process (all its
  threads: what the work costs, little changed by other jobs on the machine);
  ``wall`` holds the same rounds in wall-clock time."""

  def __init__(self, names):
    super().__init__({n: [] for n in names})
    self.wall = {n: [] for n in names}


def interleave(arms, rounds, warmup=1):
  """Times each callable of ``arms`` (name -> fn) once a round, ``rounds`` rounds,
  the order rotating, after ``warmup`` untimed calls of each; returns Times."""
  names = list(arms)
  for _ in range(warmup):
    for n in names:
      arms[n]()
  times = Times(names)
  for r in range(rounds):
    order = names[r % len(names):] + names[:r % len(names)]
    for n in order:
      wall, cpu = time.perf_counter(), time.process_time()
      arms[n]()
      times[n].append(time.process_time() - cpu)
      times.wall[n].append(time.perf_counter() - wall)
  return times


def _per_round(values):
  return {"median": statistics.median(values), "min": min(values),
          "max": max(values), "rounds": len(values)}


def ratio(times, numerator, denominator, fn=None):
  """Median and range over rounds of the per-round ratio of two arms (or of
  ``fn(numerator seconds, denominator seconds)``), in CPU time; the same in
  wall-clock time under ``wall``."""
  fn = fn or (lambda a, b: a / b)
  r = _per_round([fn(a, b) for a, b in zip(times[numerator], times[denominator])])
  r["wall"] = _per_round([fn(a, b) for a, b in zip(times.wall[numerator],
                                                    times.wall[denominator])])
  return r


def _summary(times, name):
  return {"median_cpu_seconds": statistics.median(times[name]),
          "median_wall_seconds": statistics.median(times.wall[name]),
          "cpu_seconds": times[name], "wall_seconds": times.wall[name]}


# ---------------------------------------------------------------- training step


class TrainStep:
  """The training step ``utils.run`` builds for one configuration, in its own
  graph and session, on a fixed synthetic packed batch."""

  def __init__(self, model, size, mesh, batch, length, gin_params=()):
    self.gin_extra = tuple(gin_params)
    self.model, self.size, self.mesh = model, size, mesh
    self.batch, self.length = batch, length
    self.gin_params = bindings(batch, length) + list(gin_params)
    configs.parse(model, size, mesh, gin_params=self.gin_params)
    mesh_shape, rules = configs.mesh_shape(), configs.layout_rules()
    devices = configs.query("utils.run.mesh_devices")
    devices = list(devices) if devices else [""] * max(mesh_shape.size, 1)
    self.graph = tf.Graph()
    with self.graph.as_default():
      tf.set_random_seed(0)
      global_step = tf.train.get_or_create_global_step()
      graph = self.mtf_graph = mtf.Graph()
      mesh_ = mtf.Mesh(graph, "my_mesh")
      shape = mtf.Shape([mtf.Dimension("batch", batch),
                         mtf.Dimension("length", length)])
      targets, segments, positions = synthetic_packed_batch(batch, length)
      feats = {k: mtf.import_fully_replicated(mesh_, tf.constant(v), shape, name=k)
               for k, v in (("targets", targets), ("segments", segments),
                            ("positions", positions))}
      lm = mtf_utils.build_model("lm", VOCAB_SIZE, VOCAB_SIZE, rules, mesh_shape)
      inputs = transformer.autoregressive_inputs(feats["targets"],
                                                 sequence_id=feats["segments"])
      _, loss = lm.call_simple(inputs=inputs, targets=feats["targets"],
                               compute_loss=True, mode=tf.estimator.ModeKeys.TRAIN,
                               variable_dtype=mtf_utils.get_variable_dtype(),
                               sequence_id=feats["segments"],
                               position=feats["positions"])
      var_grads = mtf.gradients([loss], [v.outputs[0]
                                         for v in graph.trainable_variables])
      opt = optimize.AdafactorOptimizer(learning_rate=0.01)
      update_ops = opt.apply_grads(var_grads, graph.trainable_variables)
      impl = mtf.placement_mesh_impl.PlacementMeshImpl(mesh_shape, rules, devices)
      lowering = mtf.Lowering(graph, {mesh_: impl},
                              autostack=configs.query("utils.run.autostack", True))
      self.loss = tf.cast(lowering.export_to_tf_tensor(loss), tf.float32)
      ops = [lowering.lowered_operation(op) for op in update_ops]
      ops.append(tf.assign_add(global_step, 1))
      self.train_op = tf.group(ops)
      init = tf.global_variables_initializer()
      copy = lowering.copy_masters_to_slices()
    self.session = tf.Session(graph=self.graph)
    self.session.run(init)
    self.session.run(copy)
    self.losses = []

  def __call__(self, steps=1):
    for _ in range(steps):
      _, loss = self.session.run([self.train_op, self.loss])
      self.losses.append(float(loss))

  @property
  def tokens(self):
    return self.batch * self.length

  def profile(self):
    """Seconds by TensorFlow op type in one traced step (the step's breakdown:
    each op's own elapsed time, summed by type; parallel ops overlap)."""
    options = tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE)
    meta = tf.RunMetadata()
    self.session.run(self.train_op, options=options, run_metadata=meta)
    by_type = {}
    for dev in meta.step_stats.dev_stats:
      for node in dev.node_stats:
        try:
          kind = self.graph.get_operation_by_name(node.node_name).type
        except (KeyError, ValueError):
          continue
        by_type[kind] = by_type.get(kind, 0.0) + node.all_end_rel_micros * 1e-6
    return by_type

  def close(self):
    self.session.close()


def synthetic_packed_batch(batch, length, seed=0):
  """Fixed random ids in two packed examples a row (segment ids 1 and 2, positions
  restarting at the second), as T5's packing gives training."""
  rng = np.random.RandomState(seed)
  targets = rng.randint(2, VOCAB_SIZE, (batch, length)).astype(np.int32)
  cut = length * 5 // 8
  segments = np.where(np.arange(length) < cut, 1, 2)[None].repeat(batch, 0)
  positions = np.concatenate([np.arange(cut), np.arange(length - cut)])
  return targets, segments.astype(np.int32), positions[None].repeat(
      batch, 0).astype(np.int32)


class Steps:
  """TrainSteps built once each, by (model, size, mesh, batch, length)."""

  def __init__(self):
    self._cache = {}

  def get(self, model, size, batch, length, mesh="cpu", gin_params=()):
    key = (model, size, mesh, batch, length, tuple(gin_params))
    if key not in self._cache:
      log(f"building the training step of {model} at {size} on {mesh}, "
          f"batch {batch} x {length}" + (f", {'; '.join(gin_params)}"
                                         if gin_params else ""))
      self._cache[key] = TrainStep(model, size, mesh, batch, length, gin_params)
    return self._cache[key]

  def close(self):
    for s in self._cache.values():
      s.close()


def _finite_losses(step):
  return bool(step.losses) and all(np.isfinite(step.losses))


# ---------------------------------------------------------------- 1. step overhead


def conv_form_arm(form):
  """The name of the Primer-EZ arm whose MDHA computes its conv as ``form``."""
  return f"primer_ez[conv_form={form}]"


def step_overhead(steps, s):
  cfg = s["step"]
  arms = {m: steps.get(m, cfg["size"], cfg["batch"], cfg["length"])
          for m in cfg["models"]}
  for form in cfg.get("conv_forms", ()):
    arms[conv_form_arm(form)] = steps.get(
        "primer_ez", cfg["size"], cfg["batch"], cfg["length"],
        gin_params=[f"MDHA.conv_form = '{form}'"])
  log(f"timing training steps of {', '.join(arms)} ({s['rounds']} rounds)")
  n_steps = cfg.get("steps", s["steps"])
  times = interleave({m: (lambda a=a: a(n_steps)) for m, a in arms.items()},
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
  # where the extra time goes: traced steps, interleaved; for each op type the
  # least time it took over the traces (contention from other jobs only adds)
  traces = {m: [] for m in arms}
  for _ in range(s["traces"]):
    for m in arms:
      traces[m].append(arms[m].profile())
  profiles = {m: {k: min(t.get(k, 0.0) for t in ts)
                  for k in set().union(*ts)} for m, ts in traces.items()}
  base_p = profiles["transformer"]
  extra = {}
  for m in list(arms)[1:]:
    diff = {k: v - base_p.get(k, 0.0) for k, v in profiles[m].items()}
    top = sorted(diff.items(), key=lambda kv: -kv[1])[:8]
    extra[m] = {"traced_step_seconds": sum(profiles[m].values()),
                "transformer_traced_step_seconds": sum(base_p.values()),
                "extra_seconds_by_op_type": dict(top),
                "op_seconds_by_type": dict(sorted(profiles[m].items(),
                                                  key=lambda kv: -kv[1])[:12])}
  extra["transformer"] = {"op_seconds_by_type": dict(sorted(
      base_p.items(), key=lambda kv: -kv[1])[:12])}
  extra["traces"] = s["traces"]
  detail = {"settings": cfg, "times": {m: _summary(times, m) for m in times},
            "losses_finite": {m: _finite_losses(a) for m, a in arms.items()},
            "profile": extra}
  return figures, detail


# ---------------------------------------------------------------- 2. utilisation


def matmul_peak(n):
  """A callable running an n x n float32 matmul (5 chained), and its FLOPs."""
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


def utilisation(steps, s):
  """Model FLOP/s over peak matmul FLOP/s; at small, also with mesh-tensorflow's
  stock attention layout (layers/attention_layout.py), timed in the same rounds."""
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
    times = interleave(arms, rounds, 1)
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
                    "step": _summary(times, "step"),
                    "matmul": _summary(times, "matmul"),
                    "matmul_gflops_per_cpu_second": matmul_flops /
                    statistics.median(times["matmul"]) / 1e9,
                    "matmul_gflops_per_wall_second": matmul_flops /
                    statistics.median(times.wall["matmul"]) / 1e9}
  session.close()
  return figures, detail


# ---------------------------------------------------------------- 3. input pipeline


def pipeline_batches(size, batch, length):
  """A callable pulling one batch from the training input pipeline, as utils.run
  reads it (T5's mesh_train_dataset_fn on the corpus task, packed, batched)."""
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


def input_pipeline(steps, s):
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

    times = interleave({"pipeline": pull_k, "train": lambda: step(n_steps)},
                       s["rounds"], 1)
    # tokens a second: pipeline k batches, training n_steps batches
    r = ratio(times, "pipeline", "train", lambda p, t: (k / p) / (n_steps / t))
    figures.append(figure(
        f"input_pipeline_{size}", f"tokens/s the input pipeline delivers / tokens/s "
        f"training consumes (transformer {size}, {batch} x {length})", r,
        target=">= 10", met=r["median"] >= 10))
    detail[size] = {"batches_per_timing": k, "train_steps_per_timing": n_steps,
                    "tokens_per_batch": batch * length,
                    "pipeline": _summary(times, "pipeline"),
                    "train": _summary(times, "train")}
    session.close()
  return figures, detail


# ---------------------------------------------------------------- 4. decoding


class Decoder:
  """Greedy decoding of a freshly initialised model, built as ``primer-mtf
  sample`` builds it (``sampling.RestoredLM``), with initialised instead of
  restored variables."""

  def __init__(self, model, size, batch, prompt, new_tokens):
    from primer_mtf.commands import sampling  # pylint: disable=g-import-not-at-top
    self.total = prompt + new_tokens
    self.model, self.size = model, size
    self.gin_params = bindings(batch, self.total)
    configs.parse(model, size, "cpu", gin_params=self.gin_params)
    run = sampling.Run(model_dir="", record={}, checkpoint=None, step=0,
                       length=self.total)
    self.lm = sampling.RestoredLM(run)
    self.batch, self.prompt, self.new_tokens = batch, prompt, new_tokens
    rng = np.random.RandomState(1)
    self.prompts = rng.randint(2, VOCAB_SIZE, (batch, prompt)).astype(np.int32)
    self._sessions = {}

  def _graph(self, key, length, outputs_fn):
    # the model is built from the parsed gin: this decoder's own
    configs.parse(self.model, self.size, "cpu", gin_params=self.gin_params)
    self.lm.length = length
    tf_graph, placeholder, outputs, _, copy, _ = self.lm._build(  # pylint: disable=protected-access
        key, self.batch, outputs_fn)
    if key not in self._sessions:
      with tf_graph.as_default():
        init = tf.global_variables_initializer()
      session = tf.Session(graph=tf_graph)
      session.run(init)
      session.run(copy)
      self._sessions[key] = session
    return self._sessions[key], placeholder, outputs

  def incremental(self):
    """Reads the prompt, then decodes ``new_tokens`` one at a time with every
    layer's decode state (K/V cache, MDHA's last k-1 projections); EOS is never
    chosen, so every row decodes all of them."""
    variable_dtype = mtf_utils.get_variable_dtype()
    new_tokens = self.new_tokens

    def outputs(model, ids):
      return [model.sample_autoregressive(
          ids, stop_at_token=1, never_end=True, max_steps=new_tokens,
          temperature=0.0,
          variable_dtype=variable_dtype, has_partial_sequences=True,
          remove_partial_sequences=False)]

    session, placeholder, tf_outputs = self._graph(("incremental",), self.total,
                                                   outputs)
    rows = np.zeros((self.batch, self.total), np.int32)
    rows[:, :self.prompt] = self.prompts
    return lambda: session.run(tf_outputs, {placeholder: rows})

  def full_prefix(self, bucket):
    """Greedy decoding with no decode state: for every new token the whole
    prefix runs through the model again (padded up to a multiple of ``bucket``
    tokens, one graph a padded length), and the argmax at its end is kept."""
    variable_dtype = mtf_utils.get_variable_dtype()

    def outputs(model, ids):
      logits, _ = model.call_simple(
          inputs=transformer.autoregressive_inputs(ids), targets=ids,
          compute_loss=False, mode="score", variable_dtype=variable_dtype)
      return [mtf.argmax(logits, logits.shape.dims[-1])]

    lengths = sorted({min(-(-(t + 1) // bucket) * bucket, self.total)
                      for t in range(self.prompt, self.total)})
    graphs = {n: self._graph(("full", n), n, outputs) for n in lengths}

    def run():
      ids = np.zeros((self.batch, self.total), np.int32)
      ids[:, :self.prompt] = self.prompts
      for t in range(self.prompt, self.total):
        n = min(-(-(t + 1) // bucket) * bucket, self.total)
        session, placeholder, tf_outputs = graphs[n]
        argmax, = session.run(tf_outputs, {placeholder: ids[:, :n]})
        ids[:, t] = argmax[:, t]
      return ids

    return run

  def close(self):
    for session in self._sessions.values():
      session.close()


def decoding(s):
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
    times = interleave(arms, s["decode_rounds"], 1)
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
    detail[size] = {m: dict(_summary(times, m), tokens_per_cpu_second=tokens /
                            statistics.median(times[m]),
                            tokens_per_wall_second=tokens /
                            statistics.median(times.wall[m])) for m in times}
    for d in dec.values():
      d.close()
  return figures, detail


# ---------------------------------------------------------------- 5. sharding


def sharding(steps, s):
  size, batch, length = s["sharding"]
  one = steps.get("transformer", size, batch, length, "cpu")
  four = steps.get("transformer", size, batch, length, "cpu_2x2")
  log(f"timing one device against batch:2,model:2 at {size}")
  times = interleave({"cpu": lambda: one(s["steps"]),
                      "cpu_2x2": lambda: four(s["steps"])}, s["rounds"], s["warmup"])
  r = ratio(times, "cpu_2x2", "cpu")
  return [figure(f"sharding_2x2_{size}", "training step time, batch:2,model:2 "
                 f"(4 virtual devices) / one device (transformer {size}, "
                 f"{batch} x {length})", r)], {
                     "times": {k: _summary(times, k) for k in times},
                     "losses_finite": {"cpu": _finite_losses(one),
                                       "cpu_2x2": _finite_losses(four)}}


# ---------------------------------------------------------------- 6, 7. recorded


def benchmark_script(name, *args, **kwargs):
  """Runs ``benchmarks/NAME`` with this checkout on the Python path."""
  subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", name), *args],
                 check=True, env=dict(os.environ, PYTHONPATH=REPO), **kwargs)


def memory(out, run_sizes=None):
  """Planner estimate / peak RSS: rerun ``benchmarks/planner_memory.py`` for
  ``run_sizes`` into ``out``, or read its committed record."""
  if run_sizes:
    folder = os.path.join(out, "planner_memory")
    benchmark_script("planner_memory.py", "--sizes", *run_sizes, "--out", folder)
    path, source = os.path.join(folder, "planner_memory.json"), "measured now"
  else:
    path, source = os.path.join(RECORDED, MEMORY_RECORD), "recorded"
  with open(path) as f:
    rows = json.load(f)
  figures = [figure(
      f"memory_{r['size']}", f"planner memory estimate / measured peak RSS "
      f"(primer {r['size']}, batch 4 x 128, cpu)",
      {"median": r["ratio_planned_to_measured"]}, source=source)
             for r in rows]
  return figures, {"source": os.path.relpath(path, REPO) if source == "recorded"
                   else path, "rows": [{k: v for k, v in r.items()
                                        if k != "train_log"} for r in rows]}


# what the profile's figures add up, by arm: parts of benchmarks/profile_step.py
PROFILE_SHARES = {
    "attention": ("attention: projections", "attention: scores QK^T",
                  "attention: weighted values AV", "attention: softmax",
                  "attention: bias, masks, reshapes"),
    "dconv": ("dconv",), "optimizer": ("optimizer",),
    "embedding_and_loss": ("embedding and loss",)}


# shares of traced op time: measured now, with no wall-clock counterpart
TRACED = "traced now"


def profile(out, s):
  """Where a step's time goes (``benchmarks/profile_step.py``, run into
  ``out/profile``): each part's share of the summed op time, by arm."""
  cfg = s["profile"]
  folder = os.path.join(out, "profile")
  benchmark_script("profile_step.py", "--size", cfg["size"], "--batch",
                   str(cfg["batch"]), "--length", str(cfg["length"]), "--traces",
                   str(cfg["traces"]), "--rounds", str(cfg["rounds"]), "--arms",
                   *cfg["arms"], "--out", folder, stdout=subprocess.DEVNULL)
  with open(os.path.join(folder, "profile_step.json")) as f:
    result = json.load(f)
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
  return figures, {"path": os.path.join(folder, "profile_step.json"),
                   "settings": cfg}


def quality():
  """The recorded speedups: every model of the six-model comparison at tiny (3
  seeds), and Primer-EZ's at each width of the scaling study."""
  figures, detail = [], {"sources": [], "never_reached": []}

  def add(key, what, stats):
    if stats is None:
      detail["never_reached"].append(key)
      return
    figures.append(figure(key, what, {"median": stats["mean"], "min": stats["min"],
                                      "max": stats["max"], "std": stats["std"],
                                      "rounds": stats["n"]}, source="recorded"))

  with open(os.path.join(RECORDED, COMPARE_RECORD)) as f:
    summary = json.load(f)
  detail["sources"].append(os.path.join("benchmarks", "results", COMPARE_RECORD))
  for group, g in summary["groups"].items():
    if group != summary["baseline"]:
      add(f"quality_{group}_tiny", "training FLOPs speedup to T5's final validation "
          f"loss, {group} over transformer (tiny, 300 steps, {len(g['runs'])} seeds)",
          g["speedup"]["flops"])
  with open(os.path.join(RECORDED, SCALING_RECORD)) as f:
    scaling = json.load(f)
  detail["sources"].append(os.path.join("benchmarks", "results", SCALING_RECORD))
  for row in scaling["widths"]:
    for model, m in row["models"].items():
      if row["d_model"] != 128:    # 128 is tiny, above
        add(f"quality_{model}_d{row['d_model']}", "training FLOPs speedup to T5's "
            f"final validation loss, {model} over transformer (d_model "
            f"{row['d_model']}, 300 steps, {row['seeds']} seeds)",
            m["final_speedup"]["flops"])
  detail["commands"] = [COMPARE_COMMAND, scaling["command"]]
  return figures, detail


# ---------------------------------------------------------------- report


def figure(key, what, r, target=None, met=None, source="measured now"):
  wall = r.get("wall", {}).get("median")
  return {"key": key, "what": what, "value": r["median"], "min": r.get("min"),
          "max": r.get("max"), "rounds": r.get("rounds"), "wall_clock_value": wall,
          "wall_clock_min": r.get("wall", {}).get("min"),
          "wall_clock_max": r.get("wall", {}).get("max"), "target": target,
          "met": met, "source": source}


def machine():
  model = None
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          model = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  return {"cores": os.cpu_count(), "cpu_model": model or platform.processor(),
          "load_average_at_start": os.getloadavg(),
          "tensorflow": tf.__version__, "python": platform.python_version()}


NOT_MEASURED = {}


def markdown(result):
  lines = ["| figure | value: median (range) over rounds | wall-clock | target | "
           "met? |", "|---|---|---|---|---|"]
  for f in result["figures"]:
    spread = (f" ({f['min']:.2f}-{f['max']:.2f})"
              if f.get("min") is not None and f.get("max") is not None else "")
    met = {True: "yes", False: "no", None: "record"}[f["met"]]
    if f["source"] == "recorded":
      met += " (recorded)"
    wall = (f"{f['wall_clock_value']:.3g} ({f['wall_clock_min']:.2f}-"
            f"{f['wall_clock_max']:.2f})" if f.get("wall_clock_value") else "-")
    lines.append(f"| {f['what']} | {f['value']:.3g}{spread} | {wall} | "
                 f"{f['target'] or '-'} | {met} |")
  for key, why in result["not_measured"].items():
    lines.append(f"| {key} | not measured: {why} | - | - | - |")
  return "\n".join(lines) + "\n"


def plot(result, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  figs = result["figures"]
  fig, ax = plt.subplots(figsize=(8, 0.45 * len(figs) + 1.2))
  y = np.arange(len(figs))[::-1]
  values = [f["value"] for f in figs]
  colors = ["C2" if f["met"] else "C3" if f["met"] is False else "C0" for f in figs]
  ax.barh(y, values, color=colors, alpha=0.8)
  for yi, f in zip(y, figs):
    if f.get("min") is not None and f.get("max") is not None:
      ax.plot([f["min"], f["max"]], [yi, yi], color="k", linewidth=1)
    if f["target"]:
      t = float(f["target"].split()[-1])
      ax.plot([t, t], [yi - 0.4, yi + 0.4], color="k", linestyle="--")
  ax.set_yticks(y)
  ax.set_yticklabels([f["key"] for f in figs], fontsize=8)
  ax.set_xscale("log")
  ax.axvline(1.0, color="gray", linewidth=0.8)
  ax.set_xlabel("ratio (log scale); dashed: target; green met, red not, blue record")
  ax.set_title(f"primer-mtf bench ({result['mode']})")
  ax.grid(alpha=0.3, axis="x", which="both")
  fig.savefig(path, dpi=100, bbox_inches="tight")
  plt.close(fig)


SECTIONS = ("step", "utilisation", "profile", "pipeline", "decode", "sharding",
            "memory", "quality")


def run(quick=False, out="bench", only=None, memory_sizes=None, command=None):
  """Runs the benchmarks; writes bench.json, bench.md and bench.png into ``out``.
  Returns the result dict."""
  s = SETTINGS["quick" if quick else "full"]
  os.makedirs(out, exist_ok=True)
  result = {"command": command or "primer-mtf bench" + (" --quick" if quick else ""),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "mode": "quick" if quick else "full", "machine": machine(),
            "settings": s, "figures": [], "details": {},
            "not_measured": dict(NOT_MEASURED)}
  started = time.perf_counter()
  steps = Steps()
  try:
    for name in SECTIONS:
      if only and name not in only:
        continue
      t0 = time.perf_counter()
      if name == "step":
        figs, detail = step_overhead(steps, s)
      elif name == "utilisation":
        figs, detail = utilisation(steps, s)
      elif name == "pipeline":
        figs, detail = input_pipeline(steps, s)
      elif name == "decode":
        figs, detail = decoding(s)
      elif name == "sharding":
        figs, detail = sharding(steps, s)
      elif name == "profile":
        figs, detail = profile(out, s)
      elif name == "memory":
        figs, detail = memory(out, memory_sizes)
      else:
        figs, detail = quality()
      detail["section_seconds"] = time.perf_counter() - t0
      result["figures"] += figs
      result["details"][name] = detail
      for f in figs:
        log(f"{f['key']}: {f['value']:.3g}" + (f" (target {f['target']})"
                                              if f["target"] else ""))
  finally:
    steps.close()
  result["total_seconds"] = time.perf_counter() - started
  paths = [os.path.join(out, n) for n in ("bench.json", "bench.md", "bench.png")]
  with open(paths[0], "w") as f:
    json.dump(result, f, indent=1, default=float)
  with open(paths[1], "w") as f:
    f.write(markdown(result))
  plot(result, paths[2])
  return result, paths
