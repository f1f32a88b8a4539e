"""Each of the paper's other architectures trains at the tiny size on the embedded
corpus, through primer-mtf and through T5's own binary."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

MODELS = ["gelu", "swish", "reglu", "swiglu", "synthesizer",
          "synthesizer_squared_relu", "switch_transformer", "switch_primer",
          "evolved_transformer"]


def _ok(result):
  assert result.returncode == 0, result.stderr[-3000:]
  return result


@pytest.mark.parametrize("model", MODELS)
def test_validation_loss_falls(model, tmp_path):
  """60 steps from the untrained checkpoint: about ln(4096) = 8.3 nats at step 0."""
  model_dir = str(tmp_path / model)
  _ok(run_cli("train", "--model_dir", model_dir, "--model", model,
              "--train_steps", "60", "--gin_param", "utils.run.save_checkpoints_steps = 60"))
  _ok(run_cli("eval", "--model_dir", model_dir, "--max_batches", "4"))
  with open(os.path.join(model_dir, "eval_validation.json")) as f:
    table = json.load(f)
  assert [r["step"] for r in table] == [0, 60]
  assert table[0]["loss"] > 7.5
  assert table[1]["loss"] < table[0]["loss"] - 1.5, table


@pytest.mark.parametrize("model", ["switch_primer", "evolved_transformer"])
def test_t5_mesh_transformer_trains_it(model, tmp_path):
  """T5's binary with this checkout's gin files and package (the gin files import
  the layers they name)."""
  binary = os.path.join(os.path.dirname(sys.executable), "t5_mesh_transformer")
  model_dir = str(tmp_path / model)
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
  result = subprocess.run(
      [binary, "--module_import=primer_mtf",
       f"--gin_location_prefix={os.path.join(REPO, 'gin')}/",
       "--gin_file=objectives/packed_lm.gin", f"--gin_file=models/{model}.gin",
       "--gin_file=sizes/tiny.gin", "--gin_file=meshes/cpu_2x2.gin",
       "--gin_param=utils.run.train_steps = 3", f"--model_dir={model_dir}"],
      capture_output=True, text=True, timeout=900, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "[train] step 3/3 loss" in result.stderr
  assert os.path.exists(os.path.join(model_dir, "model.ckpt-3.index"))
