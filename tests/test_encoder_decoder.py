"""MDHA in T5 bitransformers: the paper's Primer-EZ decoder, and a centred
(non-causal) MDHA for encoders. The centred conv's own numerics are checked
against numpy, without a model, in test_dconv.py."""
import numpy as np
import pytest

import primer_mtf  # pylint: disable=unused-import
from primer_mtf import configs

from mtf_harness import EncDec, VOCAB, configure

pytestmark = pytest.mark.graph


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
