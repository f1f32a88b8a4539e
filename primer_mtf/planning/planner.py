"""Plans a run before it starts: parameters, FLOPs, memory per core, layout checks.

From the graph (``model_graph`` builds the run's model from its gin files without
lowering it): the parameters and each core's slice of every variable, Adafactor's
slots by mesh-tensorflow's own factoring rule, the forward pass's matmul FLOPs, and
every dimension the layout must divide. A mixture of experts holds all its experts'
parameters (split over the mesh as the layout rules say) but computes with one
expert a token: its FLOPs and ``active_parameters`` count that one. A new layer is counted with no edit here.

From formulas, where a graph has no answer: training FLOPs are 3x the forward
pass's (the backward pass costs two forwards); the activations kept for the
backward pass, per layer type, at the configured microbatch; and on a CPU, the
runtime and mesh-tensorflow's bfloat16 master copy of the variables.
"""

import math

import mesh_tensorflow as mtf
from mesh_tensorflow import optimize
from mesh_tensorflow.transformer import moe
from mesh_tensorflow.transformer import transformer_layers

from primer_mtf import configs
from primer_mtf.data import vocab as vocab_lib
from primer_mtf.errors import UsageError
from primer_mtf.layers.mdha import MDHA
from primer_mtf.planning import model_graph
from primer_mtf.planning.accelerators import GiB
from primer_mtf.planning.accelerators import accelerator

# The (size, mesh) pairs the README recommends; tests hold each to the planner.
RECOMMENDED = [
    ("tiny", "cpu"), ("tiny", "cpu_2x2"),
    ("small", "v3_8"), ("medium", "v3_8"), ("large", "v3_8_mp2"),
    ("xl", "v3_32_mp4"), ("xl", "v4_32_mp4"), ("xl", "v5e_16_mp4"),
    ("xl", "v5p_32_mp4"), ("8b", "v3_128_mp8"),
    ("8b", "v4_128_mp8"), ("32b", "v4_512_mp16"),
    ("large", "gpu_a100_8_mp4"), ("xl", "gpu_h100_8_mp8"),
]
# On a CPU the whole process shares the memory: the Python/TensorFlow runtime and
# the input pipeline (about 1 GiB: the tiny model's peak RSS, measured with
# benchmarks/planner_memory.py), and mesh-tensorflow's master copy of every
# variable (bfloat16, its default master_dtype) beside the float32 slices it trains.
CPU_RUNTIME_BYTES = int(1.0 * GiB)


def per_core_shape(shape, mesh_shape, rules):
  """The dimension sizes of one core's slice of a tensor of ``shape``."""
  out = []
  for d in shape.dims:
    axis = rules.tensor_dimension_to_mesh_axis(d, mesh_shape)
    out.append(d.size // mesh_shape.dims[axis].size if axis is not None else d.size)
  return tuple(out)


def optimizer_slot_shapes(shape, optimizer):
  """The shapes of the slots ``optimizer`` (Adafactor) keeps for a variable."""
  # pylint: disable=protected-access
  factored = optimizer._factored_dims(shape)
  slots = [shape - factored[0], shape - factored[1]] if factored else [shape]
  if optimizer._beta1:
    slots.append(shape)
  return slots


def _activation_values_per_token(layer, d_model, length, model_par):
  """Values per token one layer keeps for the backward pass (a formula)."""
  values = 4 * d_model                      # residual input, norm, dropout, output
  if isinstance(layer, transformer_layers.SelfAttention):
    channels = layer.num_heads * layer.kv_dim.size
    projections = 6 + (3 if isinstance(layer, MDHA) else 0)   # q, k, v (+ convs)
    values += (projections * channels + 2 * layer.num_heads * length) / model_par
  elif isinstance(layer, transformer_layers.DenseReluDense):
    activations = layer.activation
    n = len(activations) if isinstance(activations, (list, tuple)) else 1
    values += (1 + n) * layer.hidden_size / model_par
  elif isinstance(layer, moe.MoE1D):
    # pylint: disable=protected-access
    hp, activations = layer._hparams, layer._activation
    n = len(activations) if isinstance(activations, (list, tuple)) else 1
    factor = hp.moe_capacity_factor_train   # expert slots a token, over all experts
    values += factor * (2 * d_model + (1 + n) * hp.moe_hidden_size)
    # dispatch and combine: [experts, capacity] a token, about factor x group size
    values += 2 * factor * hp.moe_group_size
  return values


def _batch_parallelism(mesh_shape, rules):
  axis = rules.tensor_dimension_to_mesh_axis(mtf.Dimension("batch", 1 << 30),
                                             mesh_shape)
  return mesh_shape.dims[axis].size if axis is not None else 1


DECODER_ONLY = ("lm", "delimited_lm", "prefix_lm")


def plan(model, size, mesh="cpu", vocab_size=None, gin_params=(), gin_files=()):
  """The plan of (model, size, mesh) as a dict; see ``format_plan``. The caller's
  gin configuration is left as it was.

  ``vocab_size``: embedding rows, by default those of T5's vocabulary (32,128),
  which the paper recipes use (gin/vocabularies/t5.gin)."""
  with configs.preserved():
    configs.parse(model, size, mesh, gin_files=gin_files, gin_params=gin_params)
    result = plan_configured(vocab_size or vocab_lib.T5_EMBEDDING_ROWS, model, size,
                             mesh)
  result["vocabulary"] = "given" if vocab_size else "t5"
  return result


def plan_run(run, mesh=None, gin_params=()):
  """The plan of a run (any kind) as it is configured, its vocabulary included;
  ``mesh``: plan it on another mesh. The caller's gin configuration is kept."""
  record = run.record or {}
  with configs.preserved():
    run.configure(gin_params, mesh)
    result = plan_configured(run.embedding_rows(), record.get("model") or run.model_dir,
                             record.get("size"), mesh or record.get("mesh"))
  result["vocabulary"] = "run"
  return result


def plan_configured(vocab_size, model, size, mesh):
  """The plan of the configured model with ``vocab_size`` embedding rows;
  ``model``, ``size`` and ``mesh`` label it."""
  if configs.query("utils.run.model_type") not in DECODER_ONLY:
    raise UsageError("the planner covers decoder-only models (model_type lm, or "
                     "delimited_lm and prefix_lm when fine-tuned)")
  built = model_graph.build(vocab_size)
  mesh_shape, rules = configs.mesh_shape(), configs.layout_rules()
  acc = accelerator()
  batch_sequences, length = built.batch, built.length
  cores = max(mesh_shape.size, 1)
  batch_par = _batch_parallelism(mesh_shape, rules)
  model_par = max(mesh_shape.size // batch_par, 1)
  errors = model_graph.layout_errors(built.dimensions(), mesh_shape, rules)

  adafactor = optimize.AdafactorOptimizer()
  params_per_core = slots_per_core = 0
  for v in built.variables:
    params_per_core += math.prod(per_core_shape(v.shape, mesh_shape, rules))
    slots_per_core += sum(math.prod(per_core_shape(s, mesh_shape, rules))
                          for s in optimizer_slot_shapes(v.shape, adafactor))

  act_bytes = (2 if configs.query("utils.get_variable_dtype.activation_dtype")
               == "bfloat16" else 4)
  tokens_per_replica = batch_sequences * length // batch_par
  micro = configs.query(
      "utils.serialize_num_microbatches.tokens_per_microbatch_per_replica",
      tokens_per_replica)
  micro_tokens = min(tokens_per_replica, micro or tokens_per_replica)
  lm = built.model
  per_token = sum(_activation_values_per_token(layer, lm.model_dim.size, length,
                                               model_par)
                  for layer in lm.layer_stack.layers)
  per_token += 3 * lm.output_vocab_dim.size / model_par * (4 / act_bytes)  # f32 logits
  memory = {"variables": 4 * params_per_core, "gradients": 4 * params_per_core,
            "adafactor": 4 * slots_per_core,
            "activations": int(micro_tokens * act_bytes * per_token)}
  memory["model_total"] = sum(memory.values())
  host = acc["kind"] == "cpu"
  memory["master_copy"] = 2 * params_per_core if host else 0
  memory["runtime"] = CPU_RUNTIME_BYTES if host else 0
  memory["total"] = memory["model_total"] + memory["master_copy"] + memory["runtime"]
  step_flops = 3 * built.forward_matmul_flops()
  result = {
      "model": model, "size": size, "mesh": mesh,
      "mesh_shape": str(mesh_shape) if mesh_shape.size else "one device",
      "accelerator": acc["kind"], "tpu_topology": acc["tpu_topology"],
      "cores": cores, "embedding_rows": vocab_size,
      "vocabulary": "given", "parameters": built.parameters(),
      "active_parameters": built.active_parameters(),
      "parameters_per_core": params_per_core,
      "flops_per_token": step_flops // (batch_sequences * length),
      "flops_per_step": step_flops,
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


# What the plan's vocabulary line says of where its embedding rows come from.
VOCABULARY_SOURCES = {
    "t5": "T5's vocabulary, the default without --model_dir; `train` trains a "
          "4,096-piece one on its corpus: plan it with --vocab_size 4096, or a run "
          "with --model_dir RUN",
    "given": "--vocab_size",
    "run": "the run's own vocabulary",
}


def _gib(b):
  """GiB to two places; under 0.01 GiB, MiB (Adafactor's factored moments)."""
  return f"{b / GiB:.2f} GiB" if b == 0 or b >= GiB / 100 else f"{b / (1 << 20):.2f} MiB"


def format_plan(p, skip_errors=0):
  """The plan as text; ``skip_errors``: leave out that many of its first errors
  (the command prints the first as its one error line instead)."""
  m = p["memory_per_core"]
  gib = _gib
  source = VOCABULARY_SOURCES.get(p.get("vocabulary", "given"), "")
  lines = [
      f"plan: model={p['model']} size={p['size']} mesh={p['mesh']} "
      f"({p['mesh_shape']}, {p['cores']} x {p['accelerator']})",
      f"  parameters           {p['parameters']:,} total, "
      f"{p['parameters_per_core']:,} per core" + (
          f", {p['active_parameters']:,} active a token"
          if p["active_parameters"] != p["parameters"] else ""),
      f"  vocabulary           {p['embedding_rows']:,} embedding rows ({source})",
      f"  training FLOPs       {p['flops_per_token']:.3e} per token, "
      f"{p['flops_per_step']:.3e} per step "
      f"({p['batch_sequences']} x {p['sequence_length']} tokens)",
      f"  memory per core      variables {gib(m['variables'])}, gradients "
      f"{gib(m['gradients'])}, Adafactor {gib(m['adafactor'])} (factored second "
      f"moments: a row and a column of each matrix), activations "
      f"{gib(m['activations'])} (microbatch {p['microbatch_tokens_per_replica']} "
      f"tokens)" + (f", master copy {gib(m['master_copy'])}, runtime "
                    f"{gib(m['runtime'])}" if m["runtime"] else "") +
      f"; total {gib(m['total'])} of {gib(p['memory_limit_per_core'])}",
      f"  layout               {'divides' if p['divides'] else 'DOES NOT DIVIDE'}",
      f"  step time at peak    {p['step_seconds_at_peak']:.3g} s",
  ]
  lines += [f"  error: {e}" for e in p["errors"][skip_errors:]]
  return "\n".join(lines)
