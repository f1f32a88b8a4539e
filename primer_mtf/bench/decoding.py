"""Greedy decoding of a freshly initialised model, built as ``primer-mtf sample``
builds it.

The graph comes from ``sampling.RestoredLM`` (the run's gin model on its mesh,
lowered as ``utils.run``'s predict path lowers it); here its variables are
initialised instead of restored, and one session per graph is kept open so that
only decoding is timed, not opening a session and restoring a checkpoint.
"""

import mesh_tensorflow as mtf
from mesh_tensorflow.transformer import transformer
from mesh_tensorflow.transformer import utils as mtf_utils
import numpy as np
import tensorflow.compat.v1 as tf

from primer_mtf import configs
from primer_mtf.bench.train_step import VOCAB_SIZE, bindings


def _fresh_lm(length):
  """A RestoredLM of the configured model with no checkpoint (its variables are
  initialised here, never restored)."""
  from primer_mtf.commands import sampling  # pylint: disable=g-import-not-at-top
  return sampling.RestoredLM(length)


class Decoder:
  """Incremental and full-prefix greedy decoding of one model at one size."""

  def __init__(self, model, size, batch, prompt, new_tokens):
    self.total = prompt + new_tokens
    self.model, self.size = model, size
    self.gin_params = bindings(batch, self.total)
    configs.parse(model, size, "cpu", gin_params=self.gin_params)
    self.lm = _fresh_lm(self.total)
    self.batch, self.prompt, self.new_tokens = batch, prompt, new_tokens
    rng = np.random.RandomState(1)
    self.prompts = rng.randint(2, VOCAB_SIZE, (batch, prompt)).astype(np.int32)
    self._sessions = {}

  def _graph(self, key, length, outputs_fn):
    # the model is built from the parsed gin: this decoder's own
    configs.parse(self.model, self.size, "cpu", gin_params=self.gin_params)
    self.lm.length = length
    tf_graph, placeholder, outputs, _, copy, _ = self.lm.build(
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
          temperature=0.0, variable_dtype=variable_dtype,
          has_partial_sequences=True, remove_partial_sequences=False)]

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
