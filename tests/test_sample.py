"""primer-mtf sample: mesh-tensorflow's incremental decoding from a checkpoint.

The e2e tests share one tiny Primer-EZ trained 300 steps through the CLI (see
``trained_primer_ez``, also used by test_score.py). Greedy decoding is checked
against the teacher-forced argmax of the same restored model, on one device and
on batch:2,model:2.
"""
import functools
import json
import os

import numpy as np
import pytest

from conftest import run_cli
from primer_mtf import cli
from primer_mtf.commands import runs

PROMPTS = ["In the beginning God created", "And the LORD spake unto Moses, saying,",
           "Blessed are the meek:", "Then Jesus answered and said unto them,"]
NEW = 24


@functools.lru_cache(maxsize=None)
def trained_primer_ez(base_temp):
  """One tiny Primer-EZ trained 300 steps per test session (checkpoints every
  100 steps, step 0 being the untrained model)."""
  model_dir = os.path.join(base_temp, "trained_primer_ez")
  result = run_cli("train", "--model_dir", model_dir, "--model", "primer_ez",
                   "--train_steps", "300")
  assert result.returncode == 0, result.stderr[-3000:]
  return model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  return trained_primer_ez(str(tmp_path_factory.getbasetemp()))


def snapshot(folder):
  """Every file below ``folder`` with its size and modification time."""
  out = {}
  for root, _, names in os.walk(folder):
    for n in names:
      st = os.stat(os.path.join(root, n))
      out[os.path.relpath(os.path.join(root, n), folder)] = (st.st_size, st.st_mtime_ns)
  return out


def fails(capsys, argv, message):
  assert cli.main(argv) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("primer-mtf: error: "), err
  assert message in err[0], err[0]


@functools.lru_cache(maxsize=None)
def greedy(model_dir, mesh):
  """(prompt ids, decoded [n, length] ids, teacher-forced argmax [n, length])
  from one restored model on ``mesh``."""
  from primer_mtf.commands import sampling  # pylint: disable=g-import-not-at-top
  run = sampling.open_run(model_dir, mesh)
  vocab = sampling.vocabulary()
  prompts = [vocab.encode(p) for p in PROMPTS]
  with sampling.RestoredLM(run.length, run.checkpoint) as lm:
    out = lm.sample(prompts, NEW, temperature=0.0)
    logits = lm.logits(list(out))
  return prompts, out, np.argmax(logits, axis=-1)


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("mesh", ["cpu", "cpu_2x2"])
def test_greedy_decoding_is_the_teacher_forced_argmax(model_dir, mesh):
  from primer_mtf.commands import sampling  # pylint: disable=g-import-not-at-top
  prompts, out, argmax = greedy(model_dir, mesh)
  decoded = []
  for row, prompt in enumerate(prompts):
    n = len(prompt)
    np.testing.assert_array_equal(out[row, :n], prompt)   # the prompt is kept
    new = sampling.new_tokens(out[row], n, NEW)
    assert len(new) == NEW or new[-1] == sampling.EOS
    # each decoded token is the argmax of the forward pass given the ones before
    np.testing.assert_array_equal(new, argmax[row, n:n + len(new)],
                                  err_msg=f"{mesh} row {row}")
    decoded += new
  assert len(set(decoded)) >= 8, decoded   # a varied decode, or the test is weak


@pytest.mark.slow
@pytest.mark.e2e
def test_2x2_mesh_decodes_what_one_device_decodes(model_dir):
  np.testing.assert_array_equal(greedy(model_dir, "cpu_2x2")[1],
                                greedy(model_dir, "cpu")[1])


@pytest.mark.slow
@pytest.mark.e2e
def test_top_k_temperature_and_seed(model_dir):
  """Top-k sampling draws only from the k most likely tokens (given the tokens
  drawn before); top-1 is greedy; a seed repeats its draw, another differs."""
  from primer_mtf.commands import sampling  # pylint: disable=g-import-not-at-top
  prompts, greedy_out, _ = greedy(model_dir, "cpu")
  run = sampling.open_run(model_dir)
  with sampling.RestoredLM(run.length, run.checkpoint) as lm:
    top1 = lm.sample(prompts, NEW, temperature=1.0, top_k=1, seed=3)
    a = lm.sample(prompts, NEW, temperature=1.0, top_k=5, seed=7)
    b = lm.sample(prompts, NEW, temperature=1.0, top_k=5, seed=7)
    c = lm.sample(prompts, NEW, temperature=1.0, top_k=5, seed=8)
    logits = lm.logits(list(a))
  np.testing.assert_array_equal(top1, greedy_out)
  np.testing.assert_array_equal(a, b)
  assert (a != c).any()
  top5 = np.argsort(-logits, axis=-1)[..., :5]
  for row, prompt in enumerate(prompts):
    n = len(prompt)
    new = sampling.new_tokens(a[row], n, NEW)
    for t, token in enumerate(new):
      assert token in top5[row, n + t], (row, t)
  assert (a != greedy_out).any()   # temperature 1 does sample


@pytest.mark.slow
@pytest.mark.e2e
def test_sample_command_prints_text_and_json(capsys, model_dir):
  from primer_mtf.commands import sampling  # pylint: disable=g-import-not-at-top
  prompts, out, _ = greedy(model_dir, "cpu")
  result = run_cli("sample", "--model_dir", model_dir, "--prompt", PROMPTS[0],
                   "--prompt", PROMPTS[1], "--max_new_tokens", str(NEW), "--json")
  assert result.returncode == 0, result.stderr[-3000:]
  lines = [json.loads(l) for l in result.stdout.strip().splitlines()]
  assert [l["prompt"] for l in lines] == PROMPTS[:2]
  for row, line in enumerate(lines):
    assert line["prompt_ids"] == prompts[row]
    assert line["ids"] == sampling.new_tokens(out[row], len(prompts[row]), NEW)
    assert line["full_text"].startswith(PROMPTS[row][:12])
    assert line["stopped"] in ("eos", "max_new_tokens")
  assert cli.main(["sample", "--model_dir", model_dir, "--prompt", PROMPTS[0],
                   "--max_new_tokens", str(NEW)]) == 0
  assert capsys.readouterr().out.strip() == lines[0]["full_text"]


@pytest.mark.slow
@pytest.mark.e2e
def test_a_prompt_longer_than_the_model_is_one_line(capsys, model_dir):
  before = snapshot(model_dir)
  fails(capsys, ["sample", "--model_dir", model_dir, "--prompt", "and the " * 100],
        "tokens; the model's length is 128, so nothing can follow it")
  fails(capsys, ["sample", "--model_dir", model_dir, "--prompt", "Amen",
                 "--checkpoint_step", "250"],
        "has no checkpoint at step 250; it has steps 0, 100, 200, 300")
  assert snapshot(model_dir) == before


@pytest.fixture
def run_without_checkpoints(tmp_path):
  model_dir = tmp_path / "run"
  runs.PretrainingRun(
      str(model_dir), runs.make_record("primer_ez", "tiny", "cpu", "kjv", 4096)).write_record()
  return str(model_dir)


@pytest.mark.parametrize("command", [["sample", "--prompt", "Amen"],
                                     ["score", "--task", "kjv_ending"]])
def test_a_run_without_checkpoints_is_one_line(capsys, run_without_checkpoints,
                                               command):
  before = snapshot(run_without_checkpoints)
  fails(capsys, [command[0], "--model_dir", run_without_checkpoints] + command[1:],
        "has no checkpoint; train first")
  assert snapshot(run_without_checkpoints) == before


@pytest.mark.parametrize("command", [["sample", "--prompt", "Amen"],
                                     ["score", "--task", "kjv_ending"]])
def test_a_folder_that_is_no_run_is_one_line(capsys, tmp_path, command):
  fails(capsys, [command[0], "--model_dir", str(tmp_path / "nothing")] + command[1:],
        "is not a primer-mtf run")
  assert not (tmp_path / "nothing").exists()


@pytest.mark.parametrize("flags, message", [
    (["--temperature", "-0.5"], "--temperature -0.5 is negative"),
    (["--top_k", "0"], "--top_k 0 must be at least 1"),
    (["--max_new_tokens", "0"], "--max_new_tokens 0 must be at least 1"),
    (["--num_samples", "0"], "--num_samples 0 must be at least 1"),
])
def test_bad_sampling_flags_are_one_line(capsys, run_without_checkpoints, flags,
                                         message):
  fails(capsys, ["sample", "--model_dir", run_without_checkpoints, "--prompt",
                 "Amen"] + flags, message)
