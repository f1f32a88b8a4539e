"""The determinism that exact resume relies on: a resumed run's input skips the
batches already trained (mesh-tensorflow's ``skip_seen_data``), which gives the
uninterrupted run's next batch only if two builds of the training stream yield
the same batches. Checked for both LM objectives, past epoch ends; the resume
itself is tested end to end in test_resume_and_seed.py."""
import numpy as np
import pytest

import primer_mtf  # pylint: disable=unused-import
from primer_mtf.commands import runs

pytestmark = pytest.mark.graph

BATCH = 4


def _stream(corpus, objective, skip, take):
  from t5.models import mesh_transformer  # pylint: disable=g-import-not-at-top
  runs.parse(runs.make_record("transformer", "tiny", "cpu", corpus, 48,
                              objective=objective))
  task = primer_mtf.corpus_task()
  ds = mesh_transformer.mesh_train_dataset_fn(
      task, {"inputs": 32, "targets": 32}, seed=1234)
  ds = ds.repeat().batch(BATCH, drop_remainder=True).skip(skip).take(take)
  return [b["targets"].numpy() for b in ds]


@pytest.mark.parametrize("objective", ["packed_lm", "lm_as_released"])
def test_skipping_k_batches_gives_batch_k_plus_1_across_epochs(tmp_path, objective):
  corpus = tmp_path / "small.txt"
  corpus.write_text("\n".join(
      f"document {i} says {' '.join(['word'] * (3 + i % 7))} number {i}"
      for i in range(40)))
  whole = _stream(str(corpus), objective, 0, 30)
  # the corpus is under 1,000 tokens: 30 batches of 4 x 32 cross several epochs
  resumed = _stream(str(corpus), objective, 17, 13)
  for k, batch in enumerate(resumed):
    np.testing.assert_array_equal(batch, whole[17 + k])
  # and the stream is no constant: later epochs are new orders
  assert not all(np.array_equal(whole[0], b) for b in whole[1:])
