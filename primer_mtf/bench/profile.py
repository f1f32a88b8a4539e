"""Where a training step's time goes: traced steps, their ops' times by part of
the model.

Each TensorFlow op of the step (``train_step.TrainStep``) is assigned to the
mesh-tensorflow operation it was lowered from (its name scope; a gradient op to
the forward op it differentiates, an optimizer op to Adafactor), and that
operation to a part of the model (attention's projections, scores, weighted
values, softmax and the rest; MDHA's conv; the FFN; norms; embedding and loss;
the optimizer; other). Every part is split into compute ops and layout ops (data
movement that mesh-tensorflow's lowering adds around the math). For each arm and
part the figure is the median over traces of the summed op times (ops on the two
inter-op threads overlap, so the sum exceeds the step's wall time, reported
beside it). ``benchmarks/profile_step.py`` is this module's command line;
``primer-mtf bench --only profile`` reads its shares.
"""
import statistics
import time

import mesh_tensorflow as mtf
import tensorflow.compat.v1 as tf

from primer_mtf.bench import harness

LAYOUT_OPS = {"Transpose", "Reshape", "ExpandDims", "Squeeze", "Pad", "Slice",
              "StridedSlice", "ConcatV2", "Pack", "Unpack", "Identity", "Const",
              "ReadVariableOp", "VarHandleOp", "NoOp", "BroadcastTo", "Tile",
              "Split", "SplitV", "Fill", "ZerosLike", "Cast", "Shape"}
PROJECTION_VARIABLES = ("q", "k", "v", "o", "qk_share")
PARTS = ["attention: projections", "attention: scores QK^T",
         "attention: weighted values AV", "attention: softmax",
         "attention: bias, masks, reshapes", "dconv", "ffn: matmuls",
         "ffn: activation, biases", "norms", "embedding and loss", "optimizer",
         "other"]


def _variable_name(tensor):
  op = tensor.operation
  if isinstance(op, mtf.Variable):
    return op.name.split("/")[-1]
  return None


def classify(mtf_graph):
  """{forward mtf operation name: part}."""
  parts, conv_outputs = {}, set()
  attention_scopes = ("/MDHA/", "/SelfAttention/", "/self_attention/")
  for op in mtf_graph.operations:
    name = op.name
    if "/gradients/" in name:
      continue
    in_attention = any(s in name for s in attention_scopes)
    variables = [v for v in (_variable_name(t) for t in op.inputs) if v]
    elementwise = any(o.shape == i.shape for o in op.outputs for i in op.inputs)
    if isinstance(op, mtf.Variable) or "adafactor" in name or name.startswith(
        "assign"):
      part = "optimizer" if not isinstance(op, mtf.Variable) else "other"
    elif in_attention and (
        isinstance(op, mtf.ShiftOperation)
        or any("_dconv_tap" in v for v in variables)
        or (elementwise or isinstance(op, mtf.StackOperation))
        and any(i in conv_outputs for i in op.inputs)):
      part = "dconv"
      conv_outputs.update(op.outputs)
    elif in_attention and "softmax" in name:
      part = "attention: softmax"
    elif in_attention and isinstance(op, mtf.EinsumOperation) and any(
        v in PROJECTION_VARIABLES for v in variables):
      part = "attention: projections"
    elif in_attention and isinstance(op, mtf.EinsumOperation) and len(
        op.inputs) == 2 and not variables:
      out = {d.name for d in op.outputs[0].shape.dims}
      ins = [{d.name for d in i.shape.dims} for i in op.inputs]
      if "memory_length" in out and "length" in out:
        part = "attention: scores QK^T"
      elif any("memory_length" in i for i in ins) and "memory_length" not in out:
        part = "attention: weighted values AV"
      else:
        part = "attention: bias, masks, reshapes"
    elif in_attention:
      part = "attention: bias, masks, reshapes"
    elif "DenseReluDense" in name:
      part = ("ffn: matmuls" if isinstance(op, mtf.EinsumOperation) and any(
          v in ("kernel",) for v in variables) else "ffn: activation, biases")
    elif "norm" in name:
      part = "norms"
    elif any(s in name for s in ("transformer/einsum", "embedding", "logsumexp",
                                 "cross_entropy", "logits", "one_hot",
                                 "reduce_sum", "loss")):
      part = "embedding and loss"
    else:
      part = "other"
    parts[name] = part
  return parts


class Classifier:
  """TensorFlow node name -> part, through the mtf operation it came from."""

  def __init__(self, mtf_graph):
    self.parts = classify(mtf_graph)
    self._cache = {}

  def __call__(self, node_name):
    if node_name in self._cache:
      return self._cache[node_name]
    if "/adafactor/" in node_name or node_name.startswith("assign"):
      part = "optimizer"
    else:
      scope = node_name.split("/gradients/")[0].split("/")
      part = "other"
      for n in range(len(scope), 0, -1):   # the longest mtf op name it is under
        prefix = "/".join(scope[:n])
        if prefix in self.parts:
          part = self.parts[prefix]
          break
    self._cache[node_name] = part
    return part


def xla_cluster_member(node, graph):
  """For a node that runs an XLA cluster (``cluster_N/xla_run``, made by TF's JIT
  from ops created in a ``jit_scope``, e.g. layers/fused_dconv.py), the name of a
  graph op inside the cluster (a JIT-marked consumer of one of its inputs), which
  places its time; None for other nodes that the graph optimisers made."""
  if not node.node_name.startswith("cluster_"):
    return None
  arguments = node.timeline_label.partition("(")[2].rstrip(")").split(", ")
  for argument in arguments:
    try:
      op = graph.get_operation_by_name(argument.split(":")[0].lstrip("^"))
    except (KeyError, ValueError):
      continue
    for consumer in (c for t in op.outputs for c in t.consumers()):
      try:
        if consumer.get_attr("_XlaCompile"):
          return consumer.name
      except ValueError:
        pass
  return None


def trace(step, classifier):
  """{(part, "compute"|"layout"): seconds} of one traced step, and its wall time."""
  options = tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE)
  meta = tf.RunMetadata()
  wall = time.perf_counter()
  step.session.run(step.train_op, options=options, run_metadata=meta)
  wall = time.perf_counter() - wall
  out = {("nodes", "count"): 0}
  for dev in meta.step_stats.dev_stats:
    for node in dev.node_stats:
      name = node.node_name
      out[("nodes", "count")] += 1
      try:
        kind = step.graph.get_operation_by_name(name).type
      except (KeyError, ValueError):
        name = xla_cluster_member(node, step.graph)
        if name is None:
          continue
        kind = "_XlaRun"
      part = classifier(name)
      key = (part, "layout" if kind in LAYOUT_OPS else "compute")
      out[key] = out.get(key, 0.0) + node.all_end_rel_micros * 1e-6
      out[(part, "ops")] = out.get((part, "ops"), 0) + 1
  return out, wall


def measure(steps, size, batch, length, arms, traces, rounds):
  """Traces ``traces`` steps of each arm (``MODEL`` or ``MODEL:CONV_FORM``),
  interleaved, then times ``rounds`` untraced interleaved rounds; returns
  ``{"arms": {arm: table}, "untraced_step_ratio_to_FIRST": ratios}``."""
  built = {}
  for arm in arms:
    model, _, form = arm.partition(":")
    built[arm] = steps.get(model, size, batch, length,
                           gin_params=[f"MDHA.conv_form = '{form}'"] if form else ())
  classifiers = {a: Classifier(s.mtf_graph) for a, s in built.items()}
  for s in built.values():
    s(2)   # warm up
    s.session.run(s.train_op)   # and the traced fetch: XLA compiles per fetch set
  traced = {a: [] for a in built}
  walls = {a: [] for a in built}
  for _ in range(traces):
    for a, s in built.items():
      t, w = trace(s, classifiers[a])
      traced[a].append(t)
      walls[a].append(w)
  # the same steps untraced, interleaved: the time the trace's op times sit in
  untraced = harness.interleave(dict(built), rounds, 0)
  first = list(built)[0]
  ratios = {a: harness.ratio(untraced, a, first) for a in list(built)[1:]}
  table = {}
  for a, ts in traced.items():
    nodes = statistics.median(t.pop(("nodes", "count")) for t in ts)
    ops = {part: statistics.median(t.pop((part, "ops"), 0) for t in ts)
           for part in PARTS}
    keys = sorted(set().union(*ts))
    med = {k: statistics.median(t.get(k, 0.0) for t in ts) for k in keys}
    total = statistics.median(sum(t.values()) for t in ts)
    rows = {}
    for part in PARTS:
      c, l = med.get((part, "compute"), 0.0), med.get((part, "layout"), 0.0)
      rows[part] = {"compute_seconds": c, "layout_seconds": l,
                    "share": (c + l) / total, "ops": ops[part]}
    table[a] = {"parts": rows, "summed_op_seconds": total,
                "traced_step_wall_seconds": statistics.median(walls[a]),
                "untraced_step_wall_seconds": statistics.median(untraced.wall[a]),
                "untraced_step_cpu_seconds": statistics.median(untraced[a]),
                "executed_nodes": nodes,
                "layout_share": sum(r["layout_seconds"] for r in rows.values())
                / total}
  return {"arms": table, "untraced_step_ratio_to_" + first: ratios}


def markdown(result):
  arms = list(result["arms"])
  head = "| part | " + " | ".join(f"{a}: ms (share)" for a in arms) + " |"
  lines = [head, "|---" * (len(arms) + 1) + "|"]
  for part in PARTS:
    cells = []
    for a in arms:
      r = result["arms"][a]["parts"][part]
      ms = 1e3 * (r["compute_seconds"] + r["layout_seconds"])
      cells.append(f"{ms:.1f} ({100 * r['share']:.1f}%)")
    lines.append(f"| {part} | " + " | ".join(cells) + " |")
  lines.append("| summed op time | " + " | ".join(
      f"{1e3 * result['arms'][a]['summed_op_seconds']:.0f}" for a in arms) + " |")
  lines.append("| of which layout ops (Transpose, Reshape, Pad, Slice...) | "
               + " | ".join(f"{100 * result['arms'][a]['layout_share']:.1f}%"
                            for a in arms) + " |")
  for key, what in (("untraced_step_wall_seconds", "untraced step, wall-clock ms"),
                    ("untraced_step_cpu_seconds", "untraced step, CPU ms (2 cores)"),
                    ("traced_step_wall_seconds", "traced step, wall-clock ms")):
    lines.append(f"| {what} | " + " | ".join(
        f"{1e3 * result['arms'][a][key]:.0f}" for a in arms) + " |")
  ratios = [v for k, v in result.items() if k.startswith("untraced_step_ratio")][0]
  lines.append(f"| untraced step CPU time / {arms[0]}'s (median, range over "
               "interleaved rounds) | - | " + " | ".join(
                   f"{ratios[a]['median']:.3f} ({ratios[a]['min']:.2f}-"
                   f"{ratios[a]['max']:.2f})" for a in arms[1:]) + " |")
  lines.append("| TensorFlow ops executed a step | " + " | ".join(
      f"{result['arms'][a]['executed_nodes']:.0f}" for a in arms) + " |")
  lines += ["", "TensorFlow ops executed a step, by part:", "",
            "| part | " + " | ".join(arms) + " |", "|---" * (len(arms) + 1) + "|"]
  for part in PARTS:
    lines.append(f"| {part} | " + " | ".join(
        f"{result['arms'][a]['parts'][part]['ops']:.0f}" for a in arms) + " |")
  return "\n".join(lines) + "\n"
