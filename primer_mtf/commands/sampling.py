"""``primer-mtf sample``: decoding from a run's checkpoint.

The model is the run's own, built from its gin configuration by
mesh-tensorflow's ``utils.build_model`` and laid out on the run's mesh (or
``--mesh``) with a placement mesh, as ``utils.run``'s predict path does; the
checkpoint's master variables are restored and copied to the slices. Decoding is
mesh-tensorflow's ``Unitransformer.sample_autoregressive``: the prompt is read in
one ``first_part`` pass, then one token a step in ``incremental`` mode, so every
layer's decode states (SelfAttention's K/V cache, MDHA's last k-1 projections) are
used. Temperature 0 is the argmax; otherwise Gumbel sampling at that
temperature, from the ``top_k`` most likely tokens when set, with a graph seed.

:class:`RestoredLM` also gives the teacher-forced logits of the same restored
model, the reference that greedy decoding and scoring are tested against.
"""

import dataclasses
import sys

import mesh_tensorflow as mtf
from mesh_tensorflow.transformer import transformer
from mesh_tensorflow.transformer import utils as mtf_utils
import numpy as np
import tensorflow.compat.v1 as tf
from t5.models import mesh_transformer

from primer_mtf import configs
from primer_mtf.errors import UsageError
from primer_mtf.commands import kinds
from primer_mtf.commands import run as run_lib

EOS = 1


@dataclasses.dataclass
class OpenedCheckpoint:
  """A run opened for decoding or scoring: gin configured, checkpoint chosen."""
  run: run_lib.Run
  checkpoint: str
  step: int
  length: int

  @property
  def model_dir(self):
    return self.run.model_dir

  @property
  def record(self):
    """The run's record ({} for a run trained by t5_mesh_transformer)."""
    return self.run.record or {}


def open_run(model_dir, mesh=None, checkpoint_step=None, gin_params=()):
  """Opens the run in ``model_dir`` (any kind), picks its checkpoint, configures
  gin; decoder-only models only."""
  run = kinds.open_run(model_dir)
  path, step = run.checkpoint(checkpoint_step)
  run.configure(gin_params, mesh)
  if not run.is_language_model():
    run.refuse(f"it holds a {configs.query('utils.run.model_type')} model; sample "
               "and score take causal decoder-only language models")
  return OpenedCheckpoint(run, path, step, run.sequence_length())


def vocabulary():
  """The configured run's target vocabulary (gin configured)."""
  return mtf_utils.targets_vocabulary(mesh_transformer.get_vocabulary())


class RestoredLM:
  """The configured model on its mesh, restored from ``checkpoint`` (gin
  configured); ``length``: tokens in a sequence.

  Each kind of computation (sampling with given settings, teacher-forced logits)
  is built once into its own graph. Every call opens a session on it and
  restores the checkpoint, so random draws start afresh from the graph's seed: a
  call with the same seed and inputs draws the same tokens. (The benchmarks build
  graphs with no checkpoint and initialise them themselves.)
  """

  def __init__(self, length, checkpoint=None):
    self.checkpoint = checkpoint
    self.length = length
    self.mesh_shape = configs.mesh_shape()
    self.layout_rules = configs.layout_rules()
    devices = configs.query("utils.run.mesh_devices")
    self.mesh_devices = list(devices) if devices else [""] * self.mesh_shape.size
    self.vocabulary = vocabulary()
    # the batch dimension is split over the mesh: a multiple of all its cores
    self.batch_multiple = max(1, self.mesh_shape.size)
    self._graphs = {}

  def close(self):
    self._graphs = {}

  def __enter__(self):
    return self

  def __exit__(self, *unused):
    self.close()

  def build(self, key, batch, outputs_fn, seed=None):
    """The graph that maps an int [batch, length] array to ``outputs_fn``'s
    tensors, with the ops that restore the checkpoint into it."""
    if key in self._graphs:
      return self._graphs[key]
    tf_graph = tf.Graph()
    with tf_graph.as_default():
      if seed is not None:
        tf.set_random_seed(seed)
      graph = mtf.Graph()
      mesh = mtf.Mesh(graph, "my_mesh")
      shape = mtf.Shape([mtf.Dimension("batch", batch),
                         mtf.Dimension("length", self.length)])
      placeholder = tf.placeholder(tf.int32, shape.to_integer_list, name="ids")
      ids = mtf.import_fully_replicated(mesh, placeholder, shape, name="ids")
      vocab_size = self.vocabulary.vocab_size
      model = mtf_utils.build_model(model_type="lm", input_vocab_size=vocab_size,
                                    output_vocab_size=vocab_size,
                                    layout_rules=self.layout_rules,
                                    mesh_shape=self.mesh_shape)
      outputs = [mtf.anonymize(o) for o in outputs_fn(model, ids)]
      mesh_impl = mtf.placement_mesh_impl.PlacementMeshImpl(
          self.mesh_shape, self.layout_rules, self.mesh_devices)
      lowering = mtf.Lowering(graph, {mesh: mesh_impl},
                              autostack=configs.query("utils.run.autostack", True))
      tf_outputs = [lowering.export_to_tf_tensor(o) for o in outputs]
      # the master variables, named as in the checkpoint; then onto the slices
      saver = tf.train.Saver(tf.global_variables())
      copy = lowering.copy_masters_to_slices()
    self._graphs[key] = (tf_graph, placeholder, tf_outputs, saver, copy, batch)
    return self._graphs[key]

  def _run(self, key, rows, outputs_fn, seed=None, batch=None):
    """Runs ``rows`` (int [n, length]) through the graph of ``key`` in batches."""
    rows = np.asarray(rows, np.int32)
    n = len(rows)
    if batch is None:
      batch = -(-n // self.batch_multiple) * self.batch_multiple
    tf_graph, placeholder, tf_outputs, saver, copy, batch = self.build(
        key, batch, outputs_fn, seed)
    results = []
    with tf.Session(graph=tf_graph) as sess:
      saver.restore(sess, self.checkpoint)
      sess.run(copy)
      for start in range(0, n, batch):
        chunk = rows[start:start + batch]
        padded = np.concatenate([chunk,
                                 np.repeat(chunk[:1], batch - len(chunk), 0)])
        out = sess.run(tf_outputs, {placeholder: padded})
        results.append([o[:len(chunk)] for o in out])
    return [np.concatenate(parts) for parts in zip(*results)]

  def rows(self, token_lists):
    """Zero-padded int [n, length] rows of token id lists."""
    out = np.zeros((len(token_lists), self.length), np.int32)
    for i, ids in enumerate(token_lists):
      out[i, :len(ids)] = ids
    return out

  def sample(self, prompts, max_new_tokens, temperature=0.0, top_k=None, seed=0,
             batch=None):
    """Continues each prompt (a list of token ids) by at most ``max_new_tokens``,
    stopping at EOS or the model's length. Returns the full [n, length] ids
    (prompt, continuation, zeros after)."""
    variable_dtype = mtf_utils.get_variable_dtype()

    def outputs(model, ids):
      return [model.sample_autoregressive(
          ids, stop_at_token=EOS, max_steps=max_new_tokens,
          temperature=float(temperature), variable_dtype=variable_dtype,
          has_partial_sequences=True, remove_partial_sequences=False,
          sampling_keep_top_k=top_k if top_k else -1)]

    key = ("sample", max_new_tokens, float(temperature), top_k, seed, batch)
    ids, = self._run(key, self.rows(prompts), outputs, seed=seed, batch=batch)
    return ids

  def logits(self, token_lists, batch=None):
    """Teacher-forced logits [n, length, vocab] of each token list, computed as
    ``utils.run``'s score mode computes them (inputs = targets shifted right)."""
    variable_dtype = mtf_utils.get_variable_dtype()

    def outputs(model, ids):
      logits, _ = model.call_simple(
          inputs=transformer.autoregressive_inputs(ids), targets=ids,
          compute_loss=False, mode="score", variable_dtype=variable_dtype)
      return [mtf.cast(logits, tf.float32)]

    out, = self._run(("logits", batch), self.rows(token_lists), outputs,
                     batch=batch)
    return out


def new_tokens(ids, prompt_length, max_new_tokens):
  """The continuation in a row of ``sample``'s output, cut after the first EOS
  (included) and at ``max_new_tokens``."""
  new = [int(t) for t in ids[prompt_length:prompt_length + max_new_tokens]]
  if EOS in new:
    new = new[:new.index(EOS) + 1]
  return new


def encode_prompt(vocab, text, length, what="--prompt"):
  ids = vocab.encode(text)
  if not ids:
    raise UsageError(f"{what} is empty; give some text to continue")
  if len(ids) >= length:
    raise UsageError(f"{what} is {len(ids)} tokens; the model's length is "
                     f"{length}, so nothing can follow it; shorten it")
  return ids


def check_sampling_flags(temperature, top_k, max_new_tokens, num_samples):
  if not np.isfinite(temperature):   # NaN sampled padding ids, and exited 0
    raise UsageError(f"--temperature {temperature} is not a finite number; 0 is "
                     "greedy")
  if temperature < 0:
    raise UsageError(f"--temperature {temperature} is negative; 0 is greedy")
  if top_k is not None and top_k < 1:
    raise UsageError(f"--top_k {top_k} must be at least 1")
  if max_new_tokens < 1:
    raise UsageError(f"--max_new_tokens {max_new_tokens} must be at least 1")
  if num_samples < 1:
    raise UsageError(f"--num_samples {num_samples} must be at least 1")


def sample(model_dir, prompts, max_new_tokens=32, temperature=0.0, top_k=None,
           seed=0, num_samples=1, mesh=None, checkpoint_step=None, gin_params=()):
  """Samples continuations of ``prompts`` from a run; returns (run, results),
  one result dict a sample: prompt, ids, text and why it stopped."""
  check_sampling_flags(temperature, top_k, max_new_tokens, num_samples)
  run = open_run(model_dir, mesh, checkpoint_step, gin_params)
  vocab = vocabulary()
  encoded = [encode_prompt(vocab, p, run.length) for p in prompts]
  for p, ids in zip(prompts, encoded):
    room = run.length - len(ids)
    if room < max_new_tokens:
      print(f"[sample] the prompt {p[:40]!r} leaves room for {room} new tokens "
            f"(the model's length is {run.length})", file=sys.stderr)
  jobs = [(p, ids) for p, ids in zip(prompts, encoded) for _ in range(num_samples)]
  with RestoredLM(run.length, run.checkpoint) as lm:
    out = lm.sample([ids for _, ids in jobs], max_new_tokens, temperature, top_k,
                    seed)
  results = []
  for (prompt, ids), row in zip(jobs, out):
    new = new_tokens(row, len(ids), max_new_tokens)
    if new and new[-1] == EOS:
      stopped = "eos"
    elif len(new) == max_new_tokens:
      stopped = "max_new_tokens"
    else:
      stopped = "length"
    text_ids = [t for t in new if t != EOS]
    prompt_text = vocab.decode(ids)
    full = vocab.decode(ids + text_ids)
    results.append({"prompt": prompt, "prompt_ids": ids, "ids": new,
                    "text": full[len(prompt_text):] if full.startswith(prompt_text)
                            else vocab.decode(text_ids),
                    "full_text": full, "stopped": stopped})
  return run, results
