"""docs/python_api.md runs as written: its python blocks, executed in order in one
namespace, train, evaluate, predict and fine-tune a tiny Primer-EZ through T5's
MtfModel, and train, evaluate, sample, score and fine-tune it through the project's
functions (a few steps each)."""
import os
import re

import pytest

from conftest import REPO

DOC = os.path.join(REPO, "docs", "python_api.md")


def code_blocks(path=DOC):
  with open(path) as f:
    return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def test_the_page_has_the_flows():
  code = "\n".join(code_blocks())
  for call in ("model.train(", "model.predict(", "python_api.finetune(",
               "python_api.evaluate(", "python_api.eval_task(", "runs.train(",
               ".evaluate(", "sampling.sample(", "scoring.score(", "finetune.train("):
    assert call in code, call


@pytest.mark.e2e
@pytest.mark.slow
def test_the_documented_snippets_run(tmp_path, monkeypatch):
  monkeypatch.setenv("MODEL_DIRS", str(tmp_path))
  monkeypatch.chdir(REPO)
  namespace = {"__name__": "python_api_doc"}
  for i, block in enumerate(code_blocks()):
    exec(compile(block, f"{DOC} block {i + 1}", "exec"), namespace)  # pylint: disable=exec-used
  steps = namespace["STEPS"]
  # MtfModel trained, predicted, scored and fine-tuned
  t5_dir, tuned_dir = namespace["t5_dir"], namespace["tuned_dir"]
  assert os.path.exists(os.path.join(t5_dir, f"model.ckpt-{steps}.index"))
  assert os.path.exists(os.path.join(t5_dir, "operative_config.gin"))
  predictions = [n for n in os.listdir(tmp_path) if n.startswith("predictions.txt")]
  assert predictions
  with open(os.path.join(tmp_path, predictions[0])) as f:
    assert len(f.read().strip().splitlines()) == 2
  assert os.path.exists(os.path.join(tuned_dir, f"model.ckpt-{2 * steps}.index"))
  # the prefix format survived into the fine-tuned run's operative config
  with open(os.path.join(tuned_dir, "operative_config.gin")) as f:
    operative = f.read()
  assert "Unitransformer.loss_on_targets_only = True" in operative
  assert namespace["rows"][-1]["step"] == steps
  # the project's functions
  assert namespace["table"][-1]["step"] == steps
  assert namespace["samples"][0]["text"]
  assert os.path.exists(os.path.join(namespace["MODEL_DIRS"], "ez_book",
                                     f"model.ckpt-{2 * steps}.index"))
