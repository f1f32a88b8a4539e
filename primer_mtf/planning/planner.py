"""Plans a run before it starts: parameters, FLOPs, memory per core, layout checks.

Everything is read from the run's parsed gin configuration (the same files that
train it) and computed analytically, so it can be checked against the real mtf
graph. Memory per core counts float32 variable slices, their gradients, Adafactor's
factored second moments (beta1 = 0: no first moment) and the activations kept for
the backward pass at the configured microbatch.
"""

import dataclasses
import math

import gin
import mesh_tensorflow as mtf
from mesh_tensorflow.transformer import utils as mtf_utils

from primer_mtf import configs
from primer_mtf.errors import UsageError

GiB = 1 << 30
# The (size, mesh) pairs the README recommends; tests hold each to the planner.
RECOMMENDED = [
    ("tiny", "cpu"), ("tiny", "cpu_2x2"),
    ("small", "v3_8"), ("medium", "v3_8"), ("large", "v3_8_mp2"),
    ("xl", "v3_32_mp4"), ("xl", "v4_32_mp4"), ("8b", "v3_128_mp8"),
    ("8b", "v4_128_mp8"), ("32b", "v4_512_mp16"),
    ("large", "gpu_a100_8_mp4"), ("xl", "gpu_h100_8_mp8"),
]
# Peak dense bf16 FLOP/s and memory per mesh device (a TPU v3 core, a v4
# megacore chip, a GPU). The CPU's are nominal: plan there for memory, not speed.
ACCELERATORS = {
    "tpu_v3": (61.5e12, 16 * GiB),
    "tpu_v4": (275e12, 32 * GiB),
    "gpu_a100_80g": (312e12, 80 * GiB),
    "gpu_h100_80g": (989e12, 80 * GiB),
    "cpu": (1e12, 24 * GiB),
}
# On a CPU the whole process shares the memory: the Python/TensorFlow runtime and
# the input pipeline (about 1 GiB: the tiny model's peak RSS, measured with
# benchmarks/planner_memory.py), and mesh-tensorflow's master copy of every
# variable (bfloat16, its default master_dtype) beside the float32 slices it trains.
CPU_RUNTIME_BYTES = int(1.0 * GiB)


@gin.configurable("accelerator", module="primer_mtf")
def accelerator(kind="cpu", tpu_topology=None):
  """What the mesh runs on; bound by gin/meshes/*.gin for the planner."""
  if kind not in ACCELERATORS:
    raise UsageError(f"unknown accelerator {kind!r}; one of {sorted(ACCELERATORS)}")
  return {"kind": kind, "tpu_topology": tpu_topology,
          "peak_flops": ACCELERATORS[kind][0], "memory": ACCELERATORS[kind][1]}


@dataclasses.dataclass
class Shape:
  """The hyperparameters that set a decoder-only model's size."""
  num_layers: int
  d_model: int
  num_heads: int
  d_kv: int
  d_ff: int
  vocab: int
  gated: bool
  ffn_bias: bool
  norm: str            # "layer_norm" | "rms_norm" | "primer_norm"
  mdha_kernel: int     # 0 without MDHA
  shared_qk: bool
  relative_buckets: int
  bias_shared: bool

  @property
  def channels(self):
    return self.num_heads * self.d_kv


def _query(name, default=None):
  return configs._query(name, default)  # pylint: disable=protected-access


def _layers():
  return _query("transformer.make_layer_stack.layers") or []


def shape_from_gin(vocab_size):
  """The parsed gin config's decoder-only model, as a :class:`Shape`."""
  if (_query("utils.run.model_type") or "lm") != "lm":
    raise UsageError("the planner covers decoder-only models (model_type lm)")
  names = " ".join(str(l) for l in _layers())
  mdha = "MDHA" in names
  attention = "MDHA" if mdha else "SelfAttention"
  activation = _query("DenseReluDense.activation", "relu")
  stack_cls = str(_query("transformer.make_layer_stack.layer_stack_cls", ""))
  per_layer = str(_query("transformer.LayerStack.sublayers_per_layer", ""))
  if "PrePostNormLayerStack" in stack_cls:
    norm = "primer_norm"
  elif "rms_norm" in per_layer:
    norm = "rms_norm"
  else:
    norm = "layer_norm"
  return Shape(
      num_layers=_query("transformer.make_layer_stack.num_layers"),
      d_model=_query("Unitransformer.d_model"),
      num_heads=_query(f"{attention}.num_heads"),
      d_kv=_query(f"{attention}.key_value_size"),
      d_ff=_query("DenseReluDense.hidden_size"),
      vocab=-(-vocab_size // 128) * 128,   # mtf pads the vocabulary to 128s
      gated=isinstance(activation, (list, tuple)) and len(activation) == 2,
      ffn_bias=bool(_query("DenseReluDense.use_bias", False)),
      norm=norm,
      mdha_kernel=(_query("MDHA.kernel_size", 3) if mdha else 0),
      shared_qk=bool(mdha and _query("MDHA.share_qk_rep", False)),
      relative_buckets=_query(f"{attention}.relative_attention_num_buckets", 32),
      bias_shared=_query(f"{attention}.relative_attention_type") == "bias_shared")


def variable_shapes(s):
  """[(name, {dim: size})] of every trainable variable, as mtf builds them."""
  d, c, f = s.d_model, s.channels, s.d_ff
  norm = {"layer_norm": 2, "rms_norm": 1, "primer_norm": 2}[s.norm]
  out = [("embedding", {"vocab": s.vocab, "d_model": d})]
  heads = {"heads": c}   # combine_dims: heads x d_kv in one dim named heads
  for layer in range(s.num_layers):
    p = f"layer{layer}/"
    out += [(p + f"attention_norm{i}", {"d_model": d}) for i in range(norm)]
    out += [(p + "q", {"d_model": d, **heads}), (p + "v", {"d_model": d, **heads}),
            (p + "o", {**heads, "d_model": d})]
    if s.shared_qk:
      out.append((p + "qk_share", {"heads": s.num_heads, "d_kv": s.d_kv,
                                   "heads_out": s.num_heads, "d_kv_out": s.d_kv}))
    else:
      out.append((p + "k", {"d_model": d, **heads}))
    convs = 2 if s.shared_qk else 3
    out += [(p + f"tap{i}", {"heads": s.num_heads, "d_kv": s.d_kv})
            for i in range(convs * s.mdha_kernel)]
    if not s.bias_shared or layer == 0:
      out.append((p + "relative_attention_bias",
                  {"heads": s.num_heads, "buckets": s.relative_buckets}))
    out += [(p + f"ffn_norm{i}", {"d_model": d}) for i in range(norm)]
    for i in range(2 if s.gated else 1):
      out.append((p + f"wi{i}", {"d_model": d, "d_ff": f}))
      if s.ffn_bias:
        out.append((p + f"wi{i}_bias", {"d_ff": f}))
    out.append((p + "wo", {"d_ff": f, "d_model": d}))
    if s.ffn_bias:
      out.append((p + "wo_bias", {"d_model": d}))
  out += [(f"final_norm{i}", {"d_model": d}) for i in range(norm)]
  return out


def count_parameters(s):
  return sum(math.prod(dims.values()) for _, dims in variable_shapes(s))


def flops_per_token(s, length):
  """Training FLOPs per token: 6 per weight (matmuls and tied softmax) plus
  attention's QK^T and AV over the full length (12 L C per layer)."""
  matmul = sum(math.prod(dims.values()) for name, dims in variable_shapes(s)
               if len(dims) >= 2 and "relative" not in name and "tap" not in name)
  return 6 * matmul + 12 * s.num_layers * length * s.channels


def _per_core_dims(dims, mesh_shape, rules):
  """The dimension sizes of one core's slice of a variable."""
  out = []
  for name, n in dims.items():
    axis = rules.tensor_dimension_to_mesh_axis(mtf.Dimension(name, n), mesh_shape)
    out.append(n // mesh_shape.dims[axis].size if axis is not None else n)
  return out


def per_core_variable_shapes(s, mesh_shape, rules):
  """The slice shape one core holds of every variable (mtf's dimension order)."""
  return [tuple(_per_core_dims(d, mesh_shape, rules)) for _, d in variable_shapes(s)]


def _adafactor_slots(sizes):
  """Adafactor's second moments: factored (row + column) for matrices, else full."""
  if len(sizes) < 2:
    return math.prod(sizes)
  return math.prod(sizes[:-1]) + math.prod(sizes[:-2] + sizes[-1:])


def divisibility_errors(s, mesh_shape, rules, sequences):
  dims = {"heads": s.num_heads, "d_ff": s.d_ff, "vocab": s.vocab,
          "batch": sequences}
  errors = []
  for name, n in dims.items():
    axis = rules.tensor_dimension_to_mesh_axis(mtf.Dimension(name, n), mesh_shape)
    if axis is not None and n % mesh_shape.dims[axis].size:
      m = mesh_shape.dims[axis]
      errors.append(f"{name}={n} does not divide over mesh dimension {m.name}:{m.size}")
  return errors


def plan(model, size, mesh="cpu", vocab_size=32128, gin_params=()):
  """The plan of (model, size, mesh) as a dict; see ``format_plan``."""
  configs.parse(model, size, mesh, gin_params=gin_params)
  s = shape_from_gin(vocab_size)
  mesh_shape = configs.mesh_shape()
  rules = mtf.convert_to_layout_rules(_query("utils.run.layout_rules"))
  acc = accelerator()
  sequence_length = _query("utils.run.sequence_length")
  length = (sequence_length["targets"] if isinstance(sequence_length, dict)
            else sequence_length)
  batch = _query("utils.run.batch_size")
  batch_sequences = (batch if isinstance(batch, int) else
                     mtf_utils.compute_batch_size({"targets": length}, mesh_shape,
                                                  rules, batch))
  cores = max(mesh_shape.size, 1)
  model_par = max(mesh_shape.size // _batch_parallelism(mesh_shape, rules), 1)
  errors = divisibility_errors(s, mesh_shape, rules, batch_sequences)

  per_core = [list(d) for d in per_core_variable_shapes(s, mesh_shape, rules)]
  params_per_core = sum(math.prod(sizes) for sizes in per_core)
  slots_per_core = sum(_adafactor_slots(sizes) for sizes in per_core)
  act_bytes = 2 if _query("utils.get_variable_dtype.activation_dtype") == "bfloat16" else 4
  tokens_per_replica = batch_sequences * length // _batch_parallelism(mesh_shape, rules)
  micro = _query("utils.serialize_num_microbatches.tokens_per_microbatch_per_replica",
                 tokens_per_replica)
  micro_tokens = min(tokens_per_replica, micro or tokens_per_replica)
  activations = micro_tokens * act_bytes * (
      s.num_layers * (8 * s.d_model +
                      (6 + (3 if s.mdha_kernel else 0)) * s.channels / model_par +
                      (3 if s.gated else 2) * s.d_ff / model_par +
                      2 * s.num_heads / model_par * length)
      + 3 * s.vocab / model_par * (4 / act_bytes))   # float32 logits, softmax, grad
  memory = {"variables": 4 * params_per_core, "gradients": 4 * params_per_core,
            "adafactor": 4 * slots_per_core, "activations": int(activations)}
  memory["model_total"] = sum(memory.values())
  host = acc["kind"] == "cpu"
  memory["master_copy"] = 2 * params_per_core if host else 0
  memory["runtime"] = CPU_RUNTIME_BYTES if host else 0
  memory["total"] = memory["model_total"] + memory["master_copy"] + memory["runtime"]
  flops_token = flops_per_token(s, length)
  step_flops = flops_token * batch_sequences * length
  result = {
      "model": model, "size": size, "mesh": mesh,
      "mesh_shape": str(mesh_shape) if mesh_shape.size else "one device",
      "accelerator": acc["kind"], "tpu_topology": acc["tpu_topology"],
      "cores": cores, "parameters": count_parameters(s),
      "parameters_per_core": params_per_core,
      "flops_per_token": flops_token, "flops_per_step": step_flops,
      "batch_sequences": batch_sequences, "sequence_length": length,
      "microbatch_tokens_per_replica": micro_tokens,
      "memory_per_core": memory, "memory_limit_per_core": acc["memory"],
      "step_seconds_at_peak": step_flops / (cores * acc["peak_flops"]),
      "divides": not errors, "errors": list(errors),
  }
  if memory["total"] > acc["memory"]:
    result["errors"].append(
        f"needs {memory['total'] / GiB:.1f} GiB per core, more than the "
        f"{acc['memory'] / GiB:.0f} GiB of a {acc['kind']} core; use more model "
        "parallelism or a smaller microbatch")
  result["fits"] = memory["total"] <= acc["memory"]
  return result


def _batch_parallelism(mesh_shape, rules):
  axis = rules.tensor_dimension_to_mesh_axis(mtf.Dimension("batch", 1 << 30),
                                             mesh_shape)
  return mesh_shape.dims[axis].size if axis is not None else 1


def format_plan(p):
  m = p["memory_per_core"]
  gib = lambda b: f"{b / GiB:.2f} GiB"
  lines = [
      f"plan: model={p['model']} size={p['size']} mesh={p['mesh']} "
      f"({p['mesh_shape']}, {p['cores']} x {p['accelerator']})",
      f"  parameters           {p['parameters']:,} total, "
      f"{p['parameters_per_core']:,} per core",
      f"  training FLOPs       {p['flops_per_token']:.3e} per token, "
      f"{p['flops_per_step']:.3e} per step "
      f"({p['batch_sequences']} x {p['sequence_length']} tokens)",
      f"  memory per core      variables {gib(m['variables'])}, gradients "
      f"{gib(m['gradients'])}, Adafactor {gib(m['adafactor'])}, activations "
      f"{gib(m['activations'])} (microbatch {p['microbatch_tokens_per_replica']} "
      f"tokens)" + (f", master copy {gib(m['master_copy'])}, runtime "
                    f"{gib(m['runtime'])}" if m["runtime"] else "") +
      f"; total {gib(m['total'])} of {gib(p['memory_limit_per_core'])}",
      f"  layout               {'divides' if p['divides'] else 'DOES NOT DIVIDE'}",
      f"  step time at peak    {p['step_seconds_at_peak']:.3g} s",
  ]
  lines += [f"  error: {e}" for e in p["errors"]]
  return "\n".join(lines)
