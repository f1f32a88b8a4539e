"""The few-shot task registry and SuperGLUE's missing data, without a model.
(The tasks' examples and prompts are tested in test_score.py.)"""
import os

import pytest

from primer_mtf.data import fewshot
from primer_mtf.data.fewshot import registry
from primer_mtf.data.fewshot import super_glue
from primer_mtf.errors import DataNotPrepared, UsageError

SHIPPED = ["kjv_ending", "kjv_last_word", "super_glue/boolq", "super_glue/cb",
           "super_glue/copa", "super_glue/rte", "super_glue/wic", "super_glue/wsc",
           "super_glue/multirc", "super_glue/record"]


def test_every_task_name_users_type_is_registered():
  assert fewshot.task_names() == SHIPPED
  for name in SHIPPED:
    task = fewshot.get(name)          # built without reading any data
    assert task.name == name and not fewshot.is_task_file(name)
  assert fewshot.get("kjv_ending").kind == fewshot.RANK
  assert fewshot.get("kjv_last_word").kind == fewshot.GENERATE
  assert fewshot.expand(["super_glue"]) == SHIPPED[2:]
  rest = [n for n in SHIPPED[2:] if n != "super_glue/cb"]
  assert fewshot.expand(["kjv_ending", "super_glue/cb", "super_glue"]) == (
      ["kjv_ending", "super_glue/cb"] + rest)


@pytest.mark.parametrize("name", ["lambada", "super_glue/axb", "super_glue",
                                  "KJV_ENDING"])
def test_an_unknown_task_is_one_line_naming_the_known_ones(name):
  with pytest.raises(UsageError) as e:
    fewshot.get(name)
  message = str(e.value)
  assert "\n" not in message
  assert message == (f"unknown --task {name!r}; give a JSONL file or one of: "
                     f"{', '.join(SHIPPED)} (super_glue runs them all)")


def test_a_file_is_a_jsonl_task_and_a_registered_name_never_is(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert fewshot.is_task_file("mine.jsonl") and fewshot.is_task_file("dir/mine")
  with pytest.raises(UsageError, match="task file dir/mine does not exist"):
    fewshot.get("dir/mine")
  (tmp_path / "kjv_ending").write_text('{"context": "a", "answer": "b"}\n')
  (tmp_path / "plain").write_text('{"context": "a", "answer": "b"}\n')
  assert fewshot.get("kjv_ending") is registry.SHIPPED["kjv_ending"](None)
  assert fewshot.get("plain").name == "plain"      # an existing file, any name


def test_missing_super_glue_data_raises_data_not_prepared(tmp_path):
  missing = str(tmp_path / "no_tfds")
  for name, (config, _) in super_glue.TASKS.items():
    with pytest.raises(DataNotPrepared) as e:
      fewshot.get(f"super_glue/{name}", missing).load("validation")
    assert isinstance(e.value, UsageError)     # still one line, exit 2, in the CLI
    # the text `score` matched before it caught DataNotPrepared: unchanged
    assert str(e.value) == (
        f"TFDS dataset super_glue/{config}:1.0.2 is not prepared under {missing}; "
        f"build it with `tfds build super_glue/{config}:1.0.2` or pass "
        "--tfds_data_dir")
  assert not os.path.exists(missing)


def test_a_super_glue_task_reads_the_data_dir_it_was_given(tmp_path):
  task = fewshot.get("super_glue/rte", str(tmp_path))
  with pytest.raises(DataNotPrepared, match=f"under {tmp_path};"):
    task.load("train")
