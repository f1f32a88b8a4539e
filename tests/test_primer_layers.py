"""Primer and Primer-EZ layers in every mode: training, packed data, decoding, meshes.

Each check is one the authors' Mesh TF release fails: its incremental decoding
convolved across the batch, its conv leaked across packed examples, and its
pre/post-norm binding never reached the model builder.
"""
import gin
import mesh_tensorflow as mtf
from mesh_tensorflow.transformer import utils as mtf_utils
from mesh_tensorflow import ops_with_redefined_builtins
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import primer_mtf
from primer_mtf import configs
from primer_mtf.layers import mdha

from mtf_harness import LM, SMALL, VOCAB, configure

pytestmark = pytest.mark.graph

MODELS = configs.decoder_only_models()
DECODER_MODELS = ["primer_ez", "primer", "mdha"]


def analytic_parameters(model):
  """Trainable parameters of each gin/models config at the SMALL size."""
  d, h, dk, dff, dff_gated, layers = (SMALL[k] for k in (
      "d_model", "num_heads", "d_kv", "d_ff", "d_ff_gated", "num_layers"))
  c = h * dk
  layer_norm, rms_norm = 2 * d, d                 # scale + bias; scale only
  attention = 4 * d * c                            # W_Q, W_K, W_V, W_O
  ffn = 2 * d * dff + dff + d                      # two matrices with biases
  norm = layer_norm
  if model in ("mdha", "primer_ez", "switch_primer"):
    attention += 3 * 3 * c                         # k=3 taps for each of Q, K, V
  if model in ("primer", "primer_as_released"):
    attention += -d * c + c * c + 2 * 3 * c        # W_s replaces W_K; K, V taps
  if model in ("transformer_plusplus", "reglu", "swiglu"):
    ffn = 3 * d * dff_gated + 2 * dff_gated + d    # gated wi_0, wi_1, wo; biases
  if model == "transformer_plusplus":
    norm = rms_norm
  if model.startswith("synthesizer"):
    attention += 512 * h * 512                     # R: [length, heads, memory_length]
  per_layer = attention + ffn + 2 * norm           # a norm per sublayer
  if model in ("switch_transformer", "switch_primer"):
    experts = 32                                   # every other FFN: 32 experts
    per_layer += (experts * 2 * d * dff + d * experts - ffn) / 2  # no biases; router
  padded_vocab = -(-VOCAB // 128) * 128            # mesh-tensorflow pads to 128s
  if model == "evolved_transformer":
    return padded_vocab * d + (layers // 2 + 1) * evolved_block(d, c, dff) + norm \
        + 3 * h * 32                               # relative bias: 2h and h heads
  return padded_vocab * d + layers * per_layer + norm + h * 32  # final norm, bias


def evolved_block(d, c, dff):
  """One Evolved Transformer block: double-heads attention, the convolutions,
  attention, Swish FFN, each with a LayerNorm before it."""
  def separable(width, d_in, d_out):   # depthwise taps + their bias, pointwise
    return width * d_in + d_in + d_in * d_out + d_out
  convolutions = (separable(11, d, 2 * d) + separable(7, d, d // 2) + 2 * 2 * d
                  + separable(7, 2 * d, d))        # a LayerNorm over 2d between
  return 4 * 2 * d + 4 * d * c + convolutions + 4 * d * c + 2 * d * dff + dff + d


@pytest.mark.parametrize("model", MODELS)
def test_parameter_count_is_analytic(model):
  configure(model)
  assert LM().count_parameters() == analytic_parameters(model)


def _run_activation(name, x):
  """The named activation, looked up as mtf.layers.dense_product does (getattr on
  mesh_tensorflow.ops_with_redefined_builtins), applied to x on a mesh."""
  with tf.Graph().as_default():
    graph = mtf.Graph()
    mesh = mtf.Mesh(graph, "mesh")
    dims = [mtf.Dimension("batch", x.shape[0]), mtf.Dimension("d_ff", x.shape[1])]
    mx = mtf.import_tf_tensor(mesh, tf.constant(x), mtf.Shape(dims))
    y = getattr(ops_with_redefined_builtins, name)(mx)
    impl = mtf.placement_mesh_impl.PlacementMeshImpl(mtf.Shape([]), {}, [""])
    lowering = mtf.Lowering(graph, {mesh: impl})
    with tf.Session() as sess:
      return sess.run(lowering.export_to_tf_tensor(y))


def test_squared_relu_is_mtf_own_and_the_old_aliases_are_gone():
  """The gin files' "squared_relu" is mesh-tensorflow's; the package no longer adds
  other names (relu2, srelu, ...) to mtf's modules."""
  x = np.linspace(-2, 2, 18).reshape(2, 9).astype(np.float32)
  np.testing.assert_allclose(_run_activation("squared_relu", x),
                             np.maximum(x, 0) ** 2, rtol=1e-6)
  for alias in ("relu2", "relu_squared", "squared-relu", "srelu"):
    assert not hasattr(ops_with_redefined_builtins, alias), alias


def test_mdha_is_importable_and_its_taps_are_constant_initialised():
  assert primer_mtf.MDHA is mdha.MDHA
  configure("primer_ez")
  layer = primer_mtf.MDHA(num_heads=4, key_value_size=8)
  assert layer.kernel_size == 3 and layer.share_qk_rep is False
  # the built model's tap variables, as their initializers set them (no redraw)
  taps = {n: v for n, v in LM().initial_values().items() if "_dconv_tap" in n}
  expected = {"tap0": 0.5, "tap1": 0.5 / 3, "tap2": 0.5 / 3}
  per_layer = {}
  for name, value in taps.items():
    layer_name, conv = name.rsplit("/", 1)          # .../MDHA, q_dconv_tap0
    projection, tap = conv.split("_dconv_")
    per_layer.setdefault(layer_name, set()).add((projection, tap))
    assert value.shape == (SMALL["num_heads"], SMALL["d_kv"]), name  # per channel
    np.testing.assert_array_equal(value, np.full(value.shape, expected[tap],
                                                 np.float32), err_msg=name)
  assert len(per_layer) == SMALL["num_layers"], sorted(per_layer)
  for layer_name, convs in per_layer.items():  # 3 convs x 3 taps in every layer
    assert convs == {(p, t) for p in "qkv" for t in expected}, layer_name


# An expert takes a limited number of a group's tokens (its capacity), in the
# group's order, rows one after another: a later token of one row can push an
# earlier token of the next row out of its expert. With room for every token
# (capacity factor = number of experts) the routing is per token and causal.
NO_OVERFLOW = {"switch_transformer": ["MoE1D.capacity_factor_eval = 32.0"],
               "switch_primer": ["MoE1D.capacity_factor_eval = 32.0"]}


@pytest.mark.parametrize("model", MODELS)
def test_causal_changing_later_tokens_leaves_earlier_logits(model):
  configure(model, NO_OVERFLOW.get(model, []))
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
@pytest.mark.parametrize("combine_dims", [True, False])
def test_packed_examples_do_not_leak_through_the_conv(model, combine_dims):
  # combine_dims=False keeps heads and d_kv apart in the projections: the conv
  # must still find the length axis by name (the release picked it by position).
  configure(model, [f"MDHA.combine_dims = {combine_dims}"])
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


# combine_dims=False is checked on one device: the axis is found by name.
MESH_LAYOUTS = [("", True), ("", False), ("batch:2,model:2", True)]


@pytest.mark.parametrize("model", DECODER_MODELS)
@pytest.mark.parametrize("mesh, combine_dims", MESH_LAYOUTS)
@pytest.mark.parametrize("with_prompt", [False, True])
def test_greedy_decoding_equals_teacher_forced_argmax(model, mesh, with_prompt,
                                                      combine_dims):
  # Untied output embedding and redrawn weights: a fresh tied model greedily
  # repeats one token, which would leave the conv caches untested.
  configure(model, ["Unitransformer.shared_embedding_and_softmax_weights = False",
                    f"MDHA.combine_dims = {combine_dims}"])
  batch, length = 4, 12
  prompts = np.zeros((batch, length), np.int32)
  prompt_lengths = [0, 0, 0, 0]
  if with_prompt:
    rng = np.random.RandomState(3)
    prompt_lengths = [1, 3, 4, 6]  # different per row
    for row, n in enumerate(prompt_lengths):
      prompts[row, :n] = rng.randint(2, VOCAB, n)
  ids, argmax = LM(mesh, seed=1, random_scale=1.0).greedy_and_teacher_forced(prompts)
  np.testing.assert_array_equal(ids[prompts != 0], prompts[prompts != 0])
  decoded = np.concatenate([ids[row, n:] for row, n in enumerate(prompt_lengths)])
  assert len(set(decoded)) >= 2, ids  # a varied decode, or the test would be weak
  for row, n in enumerate(prompt_lengths):
    # every decoded token is the forward pass's argmax given the tokens before it
    np.testing.assert_array_equal(ids[row, n:], argmax[row, n:], err_msg=f"row {row}")


@pytest.mark.parametrize("kernel_size", [1, 2, 4])
def test_greedy_decoding_equals_teacher_forced_argmax_at_other_widths(kernel_size):
  """k-1 decode states (none at k=1), read and rotated at every step."""
  configure("primer_ez", ["Unitransformer.shared_embedding_and_softmax_weights = False",
                          f"MDHA.kernel_size = {kernel_size}"])
  prompts = np.zeros((4, 12), np.int32)
  prompt_lengths = [0, 1, 3, 5]
  rng = np.random.RandomState(5)
  for row, n in enumerate(prompt_lengths):
    prompts[row, :n] = rng.randint(2, VOCAB, n)
  ids, argmax = LM("", seed=1, random_scale=1.0).greedy_and_teacher_forced(prompts)
  decoded = np.concatenate([ids[row, n:] for row, n in enumerate(prompt_lengths)])
  assert len(set(decoded)) >= 2, ids
  for row, n in enumerate(prompt_lengths):
    np.testing.assert_array_equal(ids[row, n:], argmax[row, n:], err_msg=f"row {row}")


# Switch: mesh-tensorflow's MoE routes each group of tokens on its own, and makes
# as many groups as the batch dimension's mesh size at least; a group size of half
# the batch's tokens gives both meshes the same two groups. The 2x2 mesh splits
# the 32 experts two ways (experts:batch).
@pytest.mark.parametrize("model, extra", [
    ("primer_ez", []), ("primer", []), ("transformer", []),
    ("switch_transformer", ["MoE1D.group_size = 24"]),
    ("switch_primer", ["MoE1D.group_size = 24"])])
def test_2x2_mesh_loss_and_gradient_norm_equal_one_device(model, extra):
  configure(model, extra)
  targets = np.random.RandomState(4).randint(1, VOCAB, (4, 12)).astype(np.int32)
  _, loss_1, grad_1 = LM("").forward(targets, gradient_norm=True)
  _, loss_4, grad_4 = LM("batch:2,model:2").forward(targets, gradient_norm=True)
  assert abs(loss_4 - loss_1) <= 1e-5 * abs(loss_1)
  assert abs(grad_4 - grad_1) <= 1e-5 * abs(grad_1)


def test_primer_uses_the_pre_post_norm_stack_and_primer_norm():
  """The released configs bound a stack the builder never used; ours is used."""
  configure("primer")
  model = mtf_utils.build_model("lm", VOCAB, VOCAB)
  assert isinstance(model.layer_stack, primer_mtf.PrePostNormLayerStack)
  names = LM().variable_names()
  attention_norms = [n for n in names if "/layer_000/pre_norm/" in n]
  ffn_norms = [n for n in names if "/layer_001/post_norm/" in n]
  assert len(attention_norms) == len(ffn_norms) == 2 * SMALL["num_layers"]
  assert not [n for n in names if "/layer_001/pre_norm/" in n or
              "/layer_000/post_norm/" in n]
  assert not [n for n in names if "layer_norm" in n or "/k" == n[-2:]]
  assert [n for n in names if n.endswith("MDHA/qk_share")]


def test_pre_post_norm_changes_the_function():
  """Same weights, other stack: the logits differ, so the binding takes effect."""
  targets = np.random.RandomState(5).randint(1, VOCAB, (2, 8)).astype(np.int32)
  configure("primer")
  pre_post = LM().forward(targets)[0]
  configure("primer", ["transformer.make_layer_stack.layer_stack_cls = "
                       "@transformer.LayerStack"])
  with pytest.raises(AssertionError):
    np.testing.assert_allclose(LM().forward(targets)[0], pre_post, atol=1e-3)


RELEASED_STACK = [  # what the release's gin really built: mtf's LayerStack, pre-norm
    "transformer.make_layer_stack.layer_stack_cls = @transformer.LayerStack",
    "transformer.LayerStack.sublayers_per_layer = [@primer_mtf.sublayer_primer_norm, "
    "@transformer.sublayer_call_layer, @transformer.sublayer_dropout, "
    "@transformer.sublayer_residual]",
    "transformer.LayerStack.sublayers_final = [@primer_mtf.sublayer_primer_norm, "
    "@transformer.sublayer_dropout]",
]


def test_primer_as_released_differs_from_primer_only_in_norm_placement():
  """The same variables (the FFN's norm moves from after the layer to before it);
  the function is the release's plain pre-norm stack, and not primer's."""
  configure("primer")
  primer_names = LM().variable_names()
  configure("primer_as_released")
  released_names = LM().variable_names()
  assert not [n for n in released_names if "/post_norm/" in n]
  assert sorted(released_names) == sorted(
      n.replace("/post_norm/", "/pre_norm/") for n in primer_names)

  targets = np.random.RandomState(6).randint(1, VOCAB, (2, 8)).astype(np.int32)
  as_released = LM(random_scale=0.3).forward(targets)[0]
  configure("primer", RELEASED_STACK)
  literal = LM(random_scale=0.3).forward(targets)[0]
  np.testing.assert_allclose(as_released, literal, rtol=1e-5, atol=1e-5)
  configure("primer")
  primer = LM(random_scale=0.3).forward(targets)[0]
  assert np.abs(primer - as_released).max() > 1e-2


# MDHA.conv_form = "release": the authors' release's conv, no packing mask.


@pytest.mark.parametrize("model", ["primer_ez", "primer"])
def test_release_conv_form_leaks_and_equals_pack_safe_unpacked(model):
  """The benchmark arm's form: the release's conv, which reads across packed
  examples; on unpacked rows it is the pack-safe conv."""
  configure(model)
  names = LM().variable_names()
  configure(model, ["MDHA.conv_form = 'release'"])
  assert LM().variable_names() == names   # the same variables: only the mask goes
  b_logits_1, b_logits_2 = _packed_row_logits()
  assert np.abs(b_logits_1 - b_logits_2).max() > 1e-3
  targets = np.random.RandomState(9).randint(1, VOCAB, (2, 12)).astype(np.int32)
  release = LM(seed=1, random_scale=0.5).forward(targets)[0]
  configure(model)
  pack_safe = LM(seed=1, random_scale=0.5).forward(targets)[0]
  np.testing.assert_allclose(release, pack_safe, rtol=1e-5, atol=1e-5)


def test_conv_form_is_checked():
  with pytest.raises(ValueError, match="conv_form"):
    mdha.MDHA(conv_form="fast")
  with pytest.raises(ValueError, match="release"):
    mdha.MDHA(conv_form="release", causal=False)
