"""The planner against the real mtf graph, the paper's sizes and the layouts."""
import json
import math

import mesh_tensorflow as mtf

import pytest

import primer_mtf  # pylint: disable=unused-import
from primer_mtf import cli
from primer_mtf import configs
from primer_mtf.planning import planner

from mtf_harness import LAYOUT, LM, VOCAB

MODELS = configs.decoder_only_models()
SIZES = configs.names("sizes")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("model", MODELS)
def test_planner_counts_the_parameters_of_the_built_graph(model, size):
  """Every size works with every model, and the analytic count is exact."""
  planned = planner.plan(model, size, "cpu", vocab_size=VOCAB)["parameters"]
  configs.parse(model, size, "cpu")
  assert LM().count_parameters() == planned


@pytest.mark.parametrize("size, expected", [
    ("small", 35e6), ("medium", 110e6), ("large", 537e6), ("xl", 1.9e9),
    ("8b", 8e9), ("32b", 32e9)])
def test_sizes_come_out_at_the_paper_s_counts(size, expected):
  params = planner.plan("transformer", size, "cpu")["parameters"]  # T5 vocab
  assert abs(params - expected) / expected < 0.04, params


@pytest.mark.parametrize("size", ["small", "large", "xl"])
def test_gated_and_primer_variants_keep_parameters_about_equal(size):
  base = planner.plan("transformer", size, "cpu")["parameters"]
  for model in MODELS:
    assert abs(planner.plan(model, size, "cpu")["parameters"] - base) / base < 0.02


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
  model_dims = [d for d in configs.mesh_shape().dims if d.name == "model"]
  cpu_mesh = ",".join(f"{d.name}:{d.size}" for d in model_dims)
  expected = planner.per_core_variable_shapes(
      planner.shape_from_gin(32128), mtf.convert_to_shape(cpu_mesh),
      mtf.convert_to_layout_rules(LAYOUT))
  configs.parse("primer", size, "cpu", gin_params=["num_layers = 2"])
  lowered = LM(cpu_mesh, vocab=32128).per_core_variable_shapes()
  assert sorted(lowered) == sorted(expected)
  # the batch dimension replicates variables: the pod's per-core count is the same
  assert planned["parameters_per_core"] == sum(math.prod(s) for s in expected)


def test_flops_per_token_follow_6n_plus_attention():
  p = planner.plan("transformer", "large", "v3_8_mp2")
  shape = planner.shape_from_gin(32128)
  n = planner.count_parameters(shape)
  attention = 12 * 24 * 512 * 1024
  # 6 N over the matrices; norms, biases and relative-bias tables are tiny
  assert abs(p["flops_per_token"] - (6 * n + attention)) / p["flops_per_token"] < 0.01


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
