"""MDHA in T5 bitransformers: the paper's Primer-EZ decoder, and a centred
(non-causal) MDHA for encoders."""
import numpy as np
import pytest

import primer_mtf  # pylint: disable=unused-import
from primer_mtf import configs
from primer_mtf.layers import dconv

from mtf_harness import EncDec, VOCAB, configure
from test_dconv import run_mtf_dconv


def numpy_centred_dconv(x, taps):
  """y[t] = taps[0] x[t+1] + taps[1] x[t] + taps[2] x[t-1] (k=3), zero outside."""
  length = x.shape[1]
  y = np.zeros_like(x)
  for t in range(length):
    for tap, offset in zip(taps, dconv.offsets(len(taps), causal=False)):
      if 0 <= t - offset < length:
        y[:, t] += tap * x[:, t - offset]
  return y


@pytest.mark.parametrize("causal, reads", [(True, [-2, -1, 0]), (False, [-1, 0, 1])])
def test_which_positions_the_conv_reads(causal, reads):
  """An impulse at position 5 shows each output's receptive field."""
  x = np.zeros((1, 11, 1, 1), np.float32)
  x[0, 5] = 1.0
  taps = np.ones((3, 1, 1), np.float32)
  y = run_mtf_dconv(x, taps, None, causal=causal)
  # y[t] reads x[t + r] for r in reads, so the impulse lands at t = 5 - r
  assert sorted(np.nonzero(y[0, :, 0, 0])[0].tolist()) == sorted(5 - r for r in reads)


def test_centred_conv_matches_numpy_and_masks_segments():
  rng = np.random.RandomState(0)
  x = rng.randn(2, 9, 2, 3).astype(np.float32)
  taps = rng.randn(3, 2, 3).astype(np.float32)
  np.testing.assert_allclose(run_mtf_dconv(x, taps, None, causal=False),
                             numpy_centred_dconv(x, taps), rtol=1e-5, atol=1e-5)
  # two packed examples: positions 0-3 and 4-8 never read each other
  segments = np.array([[1] * 4 + [2] * 5] * 2, np.int32)
  y = run_mtf_dconv(x, taps, segments, causal=False)
  np.testing.assert_allclose(y[:, :4], numpy_centred_dconv(x[:, :4], taps), rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(y[:, 4:], numpy_centred_dconv(x[:, 4:], taps), rtol=1e-5,
                             atol=1e-5)


def test_centred_taps_put_one_half_on_the_current_token():
  assert dconv.tap_initial_values(3, causal=False) == [0.5 / 3, 0.5, 0.5 / 3]


@pytest.mark.parametrize("model, in_decoder, in_encoder", [
    ("bi/transformer", False, False), ("bi/squared_relu", False, False),
    ("bi/mdha", True, False), ("bi/primer_ez", True, False),
    ("bi/primer_ez_both", True, True)])
def test_mdha_sits_where_the_config_says(model, in_decoder, in_encoder):
  configure(model)
  names = EncDec().variable_names()
  decoder_taps = [n for n in names if n.startswith("decoder/") and "_dconv_tap" in n]
  encoder_taps = [n for n in names if n.startswith("encoder/") and "_dconv_tap" in n]
  assert len(decoder_taps) == (2 * 3 * 3 if in_decoder else 0)  # layers x QKV x taps
  assert len(encoder_taps) == (2 * 3 * 3 if in_encoder else 0)


ENC_DEC_MODELS = [m for m in configs.names("models") if m.startswith("bi/")]


@pytest.mark.parametrize("model", ENC_DEC_MODELS)
def test_decoder_stays_causal(model):
  configure(model)
  rng = np.random.RandomState(1)
  inputs = rng.randint(1, VOCAB, (2, 10)).astype(np.int32)
  a = rng.randint(1, VOCAB, (2, 10)).astype(np.int32)
  b = a.copy()
  b[:, 5:] = rng.randint(1, VOCAB, (2, 5))
  lm = EncDec()
  np.testing.assert_allclose(lm.forward(inputs, a)[:, :6], lm.forward(inputs, b)[:, :6],
                             atol=1e-6)


# Redrawn weights under which greedy decoding does not repeat one token (a fresh
# model does, which would leave the conv caches untested); the test checks it.
@pytest.mark.parametrize("model, seed, scale", [("bi/primer_ez", 2, 2.0),
                                                ("bi/primer_ez_both", 2, 0.3)])
@pytest.mark.parametrize("mesh", ["", "batch:2,model:2"])
def test_greedy_decoding_equals_teacher_forced_argmax(model, seed, scale, mesh):
  configure(model, ["Unitransformer.shared_embedding_and_softmax_weights = False",
                    "Bitransformer.shared_embedding = False"])
  inputs = np.random.RandomState(2).randint(1, VOCAB, (4, 10)).astype(np.int32)
  ids, argmax = EncDec(mesh, seed=seed, random_scale=scale).greedy_and_teacher_forced(
      inputs)
  assert len(set(ids.ravel())) >= 2, ids
  np.testing.assert_array_equal(ids, argmax)
