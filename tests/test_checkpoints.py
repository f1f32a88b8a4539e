"""Listing a run's checkpoints, and telling a damaged one from a whole one by
its index alone: a shard cut at any offset, a missing shard, a broken index."""
import os
import random

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from primer_mtf.errors import UsageError
from primer_mtf.training import checkpoints


def test_steps_in_numeric_order_with_step_zero(tmp_path):
  for name in ("model.ckpt-1000.index", "model.ckpt-20.index", "model.ckpt-0.index",
               "model.ckpt-100.index", "model.ckpt-5.index",
               # not checkpoint indexes
               "model.ckpt-100.meta", "model.ckpt-100.data-00000-of-00001",
               "model.ckpt-7.index.tempstate123", "checkpoint", "graph.pbtxt",
               "other.ckpt-3.index"):
    (tmp_path / name).write_text("")
  assert checkpoints.steps(str(tmp_path)) == [0, 5, 20, 100, 1000]


def test_steps_of_a_run_without_checkpoints(tmp_path):
  (tmp_path / "operative_config.gin").write_text("")
  assert checkpoints.steps(str(tmp_path)) == []


def _save(model_dir, steps=(10, 20)):
  """Real checkpoints, written by TensorFlow's sharded saver, at ``steps``."""
  with tf.Graph().as_default():
    a = tf.Variable(np.arange(3000, dtype=np.float32).reshape(30, 100), name="a")
    b = tf.Variable(np.ones(77, np.float32), name="b")
    step = tf.Variable(0, dtype=tf.int64, name="global_step")
    saver = tf.train.Saver(sharded=True, max_to_keep=None)
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      for s in steps:
        sess.run(step.assign(s))
        saver.save(sess, os.path.join(model_dir, "model.ckpt"), global_step=s)
  del a, b


@pytest.fixture
def run(tmp_path):
  _save(str(tmp_path))
  return str(tmp_path)


def _shards(path):
  return sorted(tf.io.gfile.glob(path + ".data-*"))


def test_whole_checkpoints_are_whole(run):
  assert checkpoints.damage(checkpoints.path(run, 10)) is None
  assert checkpoints.damage(checkpoints.path(run, 20)) is None
  assert checkpoints.newest_intact(run) == (checkpoints.path(run, 20), [])


@pytest.mark.parametrize("seed", range(5))
def test_a_shard_cut_at_any_offset_is_damage(run, seed):
  newest = checkpoints.path(run, 20)
  shard = _shards(newest)[0]
  size = os.path.getsize(shard)
  cut = random.Random(seed).randrange(size)
  with open(shard, "r+b") as f:
    f.truncate(cut)
  why = checkpoints.damage(newest)
  assert why and "bytes of the" in why, why
  intact, damaged = checkpoints.newest_intact(run)
  assert intact == checkpoints.path(run, 10) and [d[0] for d in damaged] == [newest]


def test_a_missing_shard_and_a_broken_index_are_damage(run):
  newest, older = checkpoints.path(run, 20), checkpoints.path(run, 10)
  os.remove(_shards(newest)[0])
  assert "shard" in checkpoints.damage(newest)   # "no data shard" / "shards are missing"
  with open(older + ".index", "r+b") as f:
    f.truncate(10)
  assert "index cannot be read" in checkpoints.damage(older)
  assert checkpoints.newest_intact(run)[0] is None


def test_choose_refuses_a_damaged_checkpoint_naming_the_whole_ones(run):
  with open(_shards(checkpoints.path(run, 20))[0], "r+b") as f:
    f.truncate(5)
  with pytest.raises(UsageError, match=r"model.ckpt-20 is damaged: .*whole: 10\)"):
    checkpoints.choose(run)
  assert checkpoints.choose(run, 10) == (checkpoints.path(run, 10), 10)


def test_set_aside_moves_the_damaged_and_points_the_state_at_the_intact(run):
  newest = checkpoints.path(run, 20)
  with open(_shards(newest)[0], "r+b") as f:
    f.truncate(5)
  intact, damaged = checkpoints.newest_intact(run)
  checkpoints.set_aside(run, damaged, intact)
  assert checkpoints.steps(run) == [10]
  assert tf.train.latest_checkpoint(run) == intact
  moved = os.listdir(os.path.join(run, checkpoints.DAMAGED_DIR))
  assert sorted(moved) == sorted(os.path.basename(f) for f in
                                 [newest + ".index", newest + ".meta"] +
                                 _shards(os.path.join(run, checkpoints.DAMAGED_DIR,
                                                      "model.ckpt-20")))
