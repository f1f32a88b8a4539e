"""Primer and Primer-EZ layers in every mode: training, packed data, decoding, meshes.

Each check is one the authors' Mesh TF release fails (see the design spec, section 2).
"""
import gin
import mesh_tensorflow as mtf
from mesh_tensorflow import ops_with_redefined_builtins
import numpy as np
import pytest

import primer_mtf
from primer_mtf import configs
from primer_mtf import mdha

from mtf_harness import LM, SMALL, VOCAB, configure

MODELS = configs.names("models")
DECODER_MODELS = ["primer_ez", "mdha"]


def analytic_parameters(model):
  d, h, dk, dff, layers = (SMALL[k] for k in ("d_model", "num_heads", "d_kv", "d_ff",
                                              "num_layers"))
  per_layer = 4 * d * h * dk + 2 * d       # Q, K, V, O; pre-attention LayerNorm
  per_layer += 2 * d * dff + dff + d + 2 * d  # FFN with biases; pre-FFN LayerNorm
  if model in ("mdha", "primer_ez"):
    per_layer += 3 * 3 * h * dk            # MDHA: k=3 taps for each of Q, K, V
  padded_vocab = -(-VOCAB // 128) * 128   # mesh-tensorflow pads vocab to 128s
  return padded_vocab * d + layers * per_layer + 2 * d + h * 32  # + final LN, rel. bias


@pytest.mark.parametrize("model", MODELS)
def test_parameter_count_is_analytic(model):
  configure(model)
  assert LM().count_parameters() == analytic_parameters(model)


def test_squared_relu_names_all_select_mtf_squared_relu():
  for name in ("squared_relu", "relu2", "relu_squared", "squared-relu", "srelu"):
    assert getattr(mtf, name) is mtf.squared_relu
    assert getattr(ops_with_redefined_builtins, name) is mtf.squared_relu
  x = np.linspace(-2, 2, 9).astype(np.float32)
  np.testing.assert_allclose(np.maximum(x, 0) ** 2, [max(v, 0) ** 2 for v in x])


@pytest.mark.parametrize("alias", ["relu2", "squared-relu"])
def test_alias_in_gin_builds_the_same_model(alias):
  configure("transformer", [f"DenseReluDense.activation = '{alias}'"])
  targets = np.random.RandomState(0).randint(1, VOCAB, (2, 8)).astype(np.int32)
  by_alias = LM().forward(targets)[0]
  configure("squared_relu")
  np.testing.assert_allclose(LM().forward(targets)[0], by_alias, rtol=1e-6)


def test_mdha_is_importable_and_its_taps_are_constant_initialised():
  assert primer_mtf.MDHA is mdha.MDHA
  configure("primer_ez")
  layer = primer_mtf.MDHA(num_heads=4, key_value_size=8)
  assert layer.kernel_size == 3 and layer.share_qk_rep is False


@pytest.mark.parametrize("model", MODELS)
def test_causal_changing_later_tokens_leaves_earlier_logits(model):
  configure(model)
  rng = np.random.RandomState(1)
  a = rng.randint(1, VOCAB, (2, 12)).astype(np.int32)
  b = a.copy()
  p = 6
  b[:, p:] = rng.randint(1, VOCAB, (2, 12 - p))
  lm = LM()
  la, lb = lm.forward(a)[0], lm.forward(b)[0]
  # logits at position t see inputs up to t, i.e. targets up to t-1
  np.testing.assert_allclose(la[:, :p + 1], lb[:, :p + 1], atol=1e-6)
  assert np.abs(la[:, p + 1:] - lb[:, p + 1:]).max() > 1e-4


@gin.configurable("LeakyMDHA")
class _LeakyMDHA(mdha.MDHA):
  """Negative control: the conv ignores packing, as the authors' release did."""

  def segment_ids(self, context, length_dim):
    return None


def _packed_row_logits(extra=()):
  """Logits of rows packing examples A (positions 0-6) and B (7-15); A varies."""
  rng = np.random.RandomState(2)
  segments = np.array([[1] * 7 + [2] * 9] * 2, np.int32)
  positions = np.array([list(range(7)) + list(range(9))] * 2, np.int32)
  a = rng.randint(1, VOCAB, (2, 16)).astype(np.int32)
  b = a.copy()
  b[:, :7] = rng.randint(1, VOCAB, (2, 7))   # every token of A changes
  lm = LM()
  return (lm.forward(a, segments, positions)[0][:, 7:],
          lm.forward(b, segments, positions)[0][:, 7:])


@pytest.mark.parametrize("model", DECODER_MODELS)
def test_packed_examples_do_not_leak_through_the_conv(model):
  configure(model)
  b_logits_1, b_logits_2 = _packed_row_logits()
  assert np.abs(b_logits_1 - b_logits_2).max() <= 1e-6


def test_negative_control_a_conv_without_the_mask_leaks():
  configure("primer_ez", ["transformer.make_layer_stack.layers = "
                          "[@LeakyMDHA, @transformer_layers.DenseReluDense]"] +
            [f"LeakyMDHA.{k} = %{v}" for k, v in (("num_heads", "num_heads"),
                                                 ("key_value_size", "d_kv"))] +
            ["LeakyMDHA.relative_attention_type = 'bias_shared'"])
  b_logits_1, b_logits_2 = _packed_row_logits()
  assert np.abs(b_logits_1 - b_logits_2).max() > 1e-3


MESHES = ["", "batch:2,model:2"]


@pytest.mark.parametrize("model", DECODER_MODELS)
@pytest.mark.parametrize("mesh", MESHES)
@pytest.mark.parametrize("with_prompt", [False, True])
def test_greedy_decoding_equals_teacher_forced_argmax(model, mesh, with_prompt):
  configure(model)
  batch, length = 4, 12
  prompts = np.zeros((batch, length), np.int32)
  prompt_lengths = [0, 0, 0, 0]
  if with_prompt:
    rng = np.random.RandomState(3)
    prompt_lengths = [1, 3, 4, 6]  # different per row
    for row, n in enumerate(prompt_lengths):
      prompts[row, :n] = rng.randint(2, VOCAB, n)
  ids, argmax = LM(mesh, seed=1, random_scale=0.2).greedy_and_teacher_forced(prompts)
  np.testing.assert_array_equal(ids[prompts != 0], prompts[prompts != 0])
  decoded = np.concatenate([ids[row, n:] for row, n in enumerate(prompt_lengths)])
  assert len(set(decoded)) >= 3, ids  # a varied decode, or the test would be weak
  for row, n in enumerate(prompt_lengths):
    # every decoded token is the forward pass's argmax given the tokens before it
    np.testing.assert_array_equal(ids[row, n:], argmax[row, n:], err_msg=f"row {row}")


@pytest.mark.parametrize("model", ["primer_ez", "transformer"])
def test_2x2_mesh_loss_and_gradient_norm_equal_one_device(model):
  configure(model)
  targets = np.random.RandomState(4).randint(1, VOCAB, (4, 12)).astype(np.int32)
  _, loss_1, grad_1 = LM("").forward(targets, gradient_norm=True)
  _, loss_4, grad_4 = LM("batch:2,model:2").forward(targets, gradient_norm=True)
  assert abs(loss_4 - loss_1) <= 1e-5 * abs(loss_1)
  assert abs(grad_4 - grad_1) <= 1e-5 * abs(grad_1)
