"""Opening a model_dir as the kind of run it holds.

A folder with a record is a pretraining or a fine-tuning run, by the record's
``kind``; a folder with no record but T5's ``operative_config.gin`` and
checkpoints is a run trained by ``t5_mesh_transformer``. Anything else is refused
with one line.
"""

import os

from primer_mtf.commands import finetune
from primer_mtf.commands import run as run_lib
from primer_mtf.commands import runs
from primer_mtf.errors import UsageError

# A record's "kind" -> its class ("finetune" and no kind: schema 1's records).
KINDS = {None: runs.PretrainingRun, runs.PretrainingRun.kind: runs.PretrainingRun,
         "finetune": finetune.FinetuningRun,
         finetune.FinetuningRun.kind: finetune.FinetuningRun}


def open_run(model_dir):
  """The :class:`run_lib.Run` in ``model_dir``; reads, never writes."""
  if not model_dir:
    raise UsageError("--model_dir is empty; give a run's model_dir")
  record = run_lib.read_record(model_dir)
  if record is None:
    if run_lib.BinaryRun.holds_one(model_dir):
      return run_lib.BinaryRun(model_dir)
    raise UsageError(f"{model_dir} is not a primer-mtf run (no {run_lib.RUN_RECORD}) "
                     f"nor one of t5_mesh_transformer (no {run_lib.OPERATIVE_CONFIG} "
                     "with checkpoints); train one with `primer-mtf train "
                     "--model_dir DIR`")
  path = os.path.join(model_dir, run_lib.RUN_RECORD)
  if record.get("schema", 1) > run_lib.SCHEMA or record.get("kind") not in KINDS:
    raise UsageError(f"{path} was written by a newer primer-mtf (schema "
                     f"{record.get('schema')}, kind {record.get('kind')!r}); "
                     "upgrade primer-mtf to read it")
  return KINDS[record.get("kind")](model_dir, record)
