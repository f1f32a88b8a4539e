"""The planner against the real mtf graph, the paper's sizes and the layouts."""
import json
import math
import os

import gin
import mesh_tensorflow as mtf
from mesh_tensorflow.transformer import transformer_layers
import pytest
import tensorflow.compat.v1 as tf

import primer_mtf  # pylint: disable=unused-import
from primer_mtf import cli
from primer_mtf import configs
from primer_mtf.data import vocab as vocab_lib
from primer_mtf.planning import model_graph
from primer_mtf.planning import planner

from mtf_harness import LAYOUT, LM, VOCAB

pytestmark = pytest.mark.graph

MODELS = configs.decoder_only_models()
SIZES = configs.names("sizes")


@pytest.mark.parametrize("model", MODELS)
def test_planner_counts_what_the_harness_builds(model):
  """The planner's graph (utils.build_model at the run's batch) and the test
  harness's (a placement mesh, length 8) hold the same variables."""
  planned = planner.plan(model, "tiny", "cpu", vocab_size=VOCAB)["parameters"]
  configs.parse(model, "tiny", "cpu")
  assert LM().count_parameters() == planned


@pytest.mark.parametrize("size", SIZES)
def test_every_size_plans_with_every_model(size):
  """Every width of every size builds with every model (two layers: the layers
  of a size are alike), and its layout divides on one device."""
  counts = {}
  for model in MODELS:
    result = planner.plan(model, size, "cpu", gin_params=["num_layers = 2"])
    assert result["divides"], result["errors"]
    counts[model] = result["parameters"]
  assert counts["primer_ez"] - counts["squared_relu"] == counts["mdha"] - counts[
      "transformer"] > 0   # MDHA adds the same taps whatever the FFN


@pytest.mark.parametrize("size, expected", [
    ("small", 35e6), ("medium", 110e6), ("large", 537e6), ("xl", 1.9e9),
    ("8b", 8e9), ("32b", 32e9)])
def test_sizes_come_out_at_the_paper_s_counts(size, expected):
  params = planner.plan("transformer", size, "cpu")["parameters"]  # T5 vocab
  assert abs(params - expected) / expected < 0.04, params


def test_t5_plusplus_large_is_the_releases_count():
  """The release's T5++ at large: d_ff 5,462, FFN biases kept, RMS norm, T5's
  vocabulary: 536.6M parameters (the paper's 537M class)."""
  d, layers, heads, d_kv, d_ff = 1024, 24, 16, 64, 5462
  ffn = 3 * d * d_ff + 2 * d_ff + d             # wi_0, wi_1 with biases; wo with bias
  per_layer = 4 * d * heads * d_kv + ffn + 2 * d  # two RMS norms (scale only)
  expected = 32128 * d + layers * per_layer + d + heads * 32  # final norm, bias
  assert planner.plan("transformer_plusplus", "large")["parameters"] == expected
  assert abs(expected - 536.5e6) / 536.5e6 < 5e-4


def test_the_planner_counts_the_t5_vocabulary_the_gin_file_binds():
  """gin/vocabularies/t5.gin (32,000 pieces + its extra ids, padded to 128s by
  mesh-tensorflow) and the planner's default embedding agree: 32,128 rows."""
  gin.clear_config()
  gin.parse_config_file(os.path.join(configs.gin_dir(), "vocabularies", "t5.gin"))
  extra_ids = gin.query_parameter("corpus_task.extra_ids")
  assert "cc_all.32000" in gin.query_parameter("corpus_task.vocabulary")
  rows = vocab_lib.embedding_rows(32000, extra_ids)
  assert rows == 32128
  small = planner.plan("transformer", "small")["parameters"]
  assert small - planner.plan("transformer", "small", vocab_size=128)["parameters"] \
      == (rows - 128) * 512


# Not parameter-matched, as in the paper: Synthesizer's R matrices (512 x heads x
# 512 a layer) come on top of the baseline; the Evolved Transformer matches it
# by whole blocks (tests/test_architectures.py).
NOT_PARAMETER_MATCHED = ("synthesizer", "synthesizer_squared_relu",
                         "evolved_transformer")


@pytest.mark.parametrize("size", ["small", "large"])
def test_gated_and_primer_variants_keep_parameters_about_equal(size):
  base = planner.plan("transformer", size, "cpu")["parameters"]
  for model in MODELS:
    result = planner.plan(model, size, "cpu")
    if model in NOT_PARAMETER_MATCHED:
      continue
    # a mixture of experts matches the baseline in the parameters a token uses
    assert abs(result["active_parameters"] - base) / base < 0.02, model


@pytest.mark.parametrize("size, mesh", planner.RECOMMENDED)
def test_recommended_pairs_divide_and_fit(size, mesh):
  for model in ("transformer", "primer"):
    result = planner.plan(model, size, mesh)
    assert result["divides"] and result["fits"], result["errors"]
    assert result["batch_sequences"] * result["sequence_length"] in (65536, 2048)


@pytest.mark.parametrize("size, mesh", planner.RECOMMENDED)
def test_recommended_layouts_lower_with_the_planned_per_core_shapes(size, mesh):
  """Lowered on a CPU placement mesh with the pod's model-parallel dimension (the
  batch dimension cut to one, two layers: every layer is laid out alike)."""
  planned = planner.plan("primer", size, mesh, gin_params=["num_layers = 2"])
  configs.parse("primer", size, mesh)   # plan leaves its caller's gin as it was
  model_dims = [d for d in configs.mesh_shape().dims if d.name == "model"]
  cpu_mesh = ",".join(f"{d.name}:{d.size}" for d in model_dims)
  configs.parse("primer", size, "cpu", gin_params=["num_layers = 2"])
  expected = [planner.per_core_shape(v.shape, mtf.convert_to_shape(cpu_mesh),
                                     mtf.convert_to_layout_rules(LAYOUT))
              for v in model_graph.build(32128, batch=2, length=8).variables]
  lowered = LM(cpu_mesh, vocab=32128).per_core_variable_shapes()
  assert sorted(lowered) == sorted(expected)
  # the batch dimension replicates variables: the pod's per-core count is the same
  assert planned["parameters_per_core"] == sum(math.prod(s) for s in expected)


def test_flops_per_token_are_6n_plus_attention():
  """Counted from the graph's matmuls; checked against the paper's formula with N
  from the size's hyperparameters: 6 per weight and token (embedding used once, as
  the tied softmax), plus 12 L T C for QK^T and AV."""
  p = planner.plan("transformer", "large", "v3_8_mp2")
  d, layers, channels, d_ff, vocab, length = 1024, 24, 16 * 64, 8192, 32128, 512
  n = vocab * d + layers * (4 * d * channels + 2 * d * d_ff)
  assert p["flops_per_token"] == 6 * n + 12 * layers * length * channels
  assert p["flops_per_step"] == p["flops_per_token"] * 128 * 512


def _slot_shapes_mtf_creates(shapes):
  """The slot variables mesh-tensorflow's Adafactor creates for variables of shapes."""
  with tf.Graph().as_default():
    graph = mtf.Graph()
    mesh = mtf.Mesh(graph, "mesh")
    for i, dims in enumerate(shapes):
      shape = mtf.Shape([mtf.Dimension(n, k) for n, k in dims])
      mtf.get_variable(mesh, f"v{i}", shape, initializer=tf.zeros_initializer())
    gin.clear_config()
    variables = graph.trainable_variables
    mtf.optimize.AdafactorOptimizer().apply_grads(
        [v.outputs[0] for v in variables], variables)
    return {v.name: v.shape for v in graph.all_variables if "_slot_" in v.name}


def test_adafactor_slots_follow_mtf_s_factoring_rule():
  """Factored over the two largest dimensions, only when both are >= 128."""
  shapes = [[("a", 256), ("b", 128)], [("a", 256), ("b", 64)],
            [("a", 64), ("b", 256), ("c", 512)], [("a", 1024)],
            [("heads", 16), ("d_kv", 64), ("heads_out", 16), ("d_kv_out", 64)]]
  created = _slot_shapes_mtf_creates(shapes)
  optimizer = mtf.optimize.AdafactorOptimizer()
  for i, dims in enumerate(shapes):
    shape = mtf.Shape([mtf.Dimension(n, k) for n, k in dims])
    mine = sorted(str(s) for s in planner.optimizer_slot_shapes(shape, optimizer))
    theirs = sorted(str(s) for n, s in created.items() if n.startswith(f"v{i}_slot"))
    assert mine == theirs, (dims, mine, theirs)
  assert len(planner.optimizer_slot_shapes(mtf.Shape(
      [mtf.Dimension("a", 256), mtf.Dimension("b", 128)]), optimizer)) == 2


@gin.configurable("ThrowawayFFN")
class _ThrowawayFFN(transformer_layers.DenseReluDense):
  """A layer the planner has never heard of: an FFN with one extra variable."""

  def call(self, context, x, losses=None):
    extra = mtf.get_variable(x.mesh, "throwaway", mtf.Shape(
        [mtf.Dimension("throwaway_rows", 7), context.model.model_dim]))
    return super().call(context, x, losses) + mtf.reduce_sum(extra, reduced_dim=extra.shape.dims[0])


def test_a_new_layer_is_counted_without_a_planner_change():
  base = planner.plan("transformer", "tiny", "cpu")
  layers = ("transformer.make_layer_stack.layers = "
            "[@transformer_layers.SelfAttention, @ThrowawayFFN]")
  params = [layers, "ThrowawayFFN.hidden_size = %d_ff", "ThrowawayFFN.use_bias = True"]
  new = planner.plan("transformer", "tiny", "cpu", gin_params=params)
  assert new["parameters"] - base["parameters"] == 2 * 7 * 128   # 2 layers
  configs.parse("transformer", "tiny", "cpu", gin_params=params)
  assert LM(vocab=32128).count_parameters() == new["parameters"]


def test_model_parallelism_splits_parameters_per_core():
  one = planner.plan("primer", "xl", "v3_8")["parameters_per_core"]
  four = planner.plan("primer", "xl", "v3_32_mp4")["parameters_per_core"]
  assert 3.9 < one / four < 4.0   # layer norms and biases stay replicated


def _cli(capsys, argv):
  code = cli.main(argv)
  captured = capsys.readouterr()
  return code, captured.out, captured.err.strip().splitlines()


def test_plan_cli_json(capsys):
  code, out, _ = _cli(capsys, ["plan", "--size", "large", "--model", "primer_ez",
                               "--mesh", "v3_8_mp2", "--json"])
  assert code == 0
  result = json.loads(out)
  assert result["divides"] and result["fits"] and result["cores"] == 8
  memory = result["memory_per_core"]
  assert memory["total"] == memory["model_total"] == sum(
      memory[k] for k in ("variables", "gradients", "adafactor", "activations"))
  assert memory["master_copy"] == memory["runtime"] == 0  # TPU: host memory apart


@pytest.mark.parametrize("argv, message", [
    (["--size", "xl", "--mesh", "v3_32_mp4", "--gin_param", "num_heads = 6"],
     "heads=6 does not divide over mesh dimension model:4"),
    (["--size", "32b", "--mesh", "v3_512_mp16"], "GiB per core, more than the 16 GiB"),
    (["--size", "xl", "--mesh", "nope"], "unknown --mesh 'nope'"),
    (["--size", "9b"], "unknown --size '9b'"),
])
def test_plan_cli_refuses_with_the_reason(capsys, argv, message):
  code, _, err = _cli(capsys, ["plan"] + argv)
  assert code == 2 and len(err) == 1 and message in err[0], err
