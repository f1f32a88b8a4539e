"""ProgressHook without an estimator: a tiny graph, hook calls by hand (or a
MonitoredSession), a controlled clock, an in-memory stream and a tmp log."""
import io
import json
import re

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import primer_mtf  # pylint: disable=unused-import
from primer_mtf.training import progress
from primer_mtf.training.progress import ProgressHook

# a report: tokens/s and ETA, or for a session's first step (its time includes
# start-up) neither
LINE = re.compile(r"\[train\] step (\d+)/(\d+) loss (-?\d+\.\d{4}) "
                  r"(?:tokens/s ([\d,]+) ETA (\d+):(\d\d):(\d\d)|"
                  r"\(first step: \d+\.\d s with start-up; tokens/s and ETA from "
                  r"the next report\))")


class Clock:
  """Stands in for time.time: returns ``now``, which the test sets."""

  def __init__(self, now=1000.0):
    self.now = now

  def __call__(self):
    return self.now


@pytest.fixture
def clock(monkeypatch):
  fake = Clock()
  monkeypatch.setattr(progress.time, "time", fake)
  return fake


def _graph(initial_step=0):
  """A graph with a global step (at ``initial_step``), a loss in LOSSES and a
  stand-in train op that advances the step by ``steps_per_run:0``."""
  graph = tf.Graph()
  with graph.as_default():
    step = tf.train.get_or_create_global_step()
    tf.assign(step, initial_step, name="restore")
    tf.group(tf.assign_add(step, tf.placeholder(tf.int64, [], name="steps_per_run")),
             name="train")
    loss = tf.constant(0.0, name="loss")
    tf.add_to_collection(tf.GraphKeys.LOSSES, loss)
  return graph


def _run_values(loss):
  return tf.train.SessionRunValues(results=np.float32(loss), options=None,
                                   run_metadata=None)


class Driver:
  """Calls a hook as a MonitoredSession would, one session."""

  def __init__(self, hook, initial_step=0):
    self.hook = hook
    self.graph = _graph(initial_step)
    with self.graph.as_default():
      hook.begin()
      self.session = tf.Session(graph=self.graph)
      self.session.run(tf.global_variables_initializer())
      self.session.run(self.graph.get_operation_by_name("restore"))
    self.hook.after_create_session(self.session, coord=None)

  def step(self, loss, steps=1):
    """One session run of ``steps`` train steps (TPU: iterations_per_loop):
    before_run, the train op, then after_run with ``loss`` as its result."""
    self.hook.before_run(None)
    self.session.run(self.graph.get_operation_by_name("train"),
                     {self.graph.get_tensor_by_name("steps_per_run:0"): steps})
    context = tf.train.SessionRunContext(original_args=None, session=self.session)
    self.hook.after_run(context, _run_values(loss))

  def close(self):
    self.session.close()


def _lines(stream):
  """The step reports (the session's start line aside)."""
  return [l for l in stream.getvalue().splitlines() if l.startswith("[train] step")]


def _steps(stream):
  return [int(LINE.fullmatch(line).group(1)) for line in _lines(stream)]


def test_format_seconds():
  assert progress._format_seconds(0) == "0:00:00"
  assert progress._format_seconds(59.99) == "0:00:59"   # whole seconds, truncated
  assert progress._format_seconds(61) == "0:01:01"
  assert progress._format_seconds(3599) == "0:59:59"
  assert progress._format_seconds(3600) == "1:00:00"
  assert progress._format_seconds(3 * 3600 + 25 * 60 + 7) == "3:25:07"
  assert progress._format_seconds(100 * 3600 + 5) == "100:00:05"  # hours unbounded
  assert progress._format_seconds(-12) == "0:00:00"


def test_begin_fetches_the_loss_of_the_losses_collection():
  hook = ProgressHook(8, 10, stream=io.StringIO())
  graph = _graph()
  with graph.as_default():
    hook.begin()
    args = hook.before_run(None)
  assert args.fetches is graph.get_tensor_by_name("loss:0")


def test_line_format_and_tokens_per_second_from_a_controlled_clock(clock):
  stream = io.StringIO()
  hook = ProgressHook(tokens_per_step=4096, train_steps=20, every_n_steps=5,
                      stream=stream)
  clock.now = 1000.0
  driver = Driver(hook)
  clock.now = 1002.0            # step 1 after 2 s: 0.5 steps/s
  driver.step(2.5)
  for step, now in zip(range(2, 6), (1003.0, 1004.0, 1005.0, 1006.0)):
    clock.now = now             # steps 2-5: 4 steps in 4 s since the last report
    driver.step(10.0 + step)
  clock.now = 1006.25           # steps 6-10: 5 steps in 0.25 s
  for step in range(6, 11):
    driver.step(1 / 3)
  driver.close()
  assert _lines(stream) == [
      # the first step's 2 s include start-up: no rate, no ETA
      "[train] step 1/20 loss 2.5000 (first step: 2.0 s with start-up; tokens/s "
      "and ETA from the next report)",
      # 1 step/s; ETA 15 s; the loss is the reported step's
      "[train] step 5/20 loss 15.0000 tokens/s 4,096 ETA 0:00:15",
      # 20 steps/s = 81,920 tokens/s; the ETA's rate is the moving one over the
      # reports since the first step: 9 steps in 4.25 s, 10 steps left: 4.7 s
      "[train] step 10/20 loss 0.3333 tokens/s 81,920 ETA 0:00:04",
  ]


def test_reports_the_first_step_every_n_steps_and_the_last(clock):
  stream = io.StringIO()
  driver = Driver(ProgressHook(16, train_steps=23, every_n_steps=5, stream=stream))
  for i in range(23):
    clock.now += 1.0
    driver.step(float(i))
  driver.close()
  assert _steps(stream) == [1, 5, 10, 15, 20, 23]
  for line in _lines(stream):
    step, total = map(int, LINE.fullmatch(line).group(1, 2))
    assert total == 23
    assert f"loss {step - 1:.4f} " in line
  # one step a second since the last report, whatever the interval
  assert {LINE.fullmatch(line).group(4) for line in _lines(stream)[1:]} == {"16"}
  assert LINE.fullmatch(_lines(stream)[0]).group(4) is None   # the first step
  # ETA: steps left at one step a second
  assert _lines(stream)[1].endswith("ETA 0:00:18")


def test_a_restored_session_counts_from_the_global_step(clock):
  """After a restore at step 7 the first step (8) is reported, then 10, 20, 25."""
  stream = io.StringIO()
  hook = ProgressHook(1, train_steps=25, every_n_steps=10, stream=stream)
  driver = Driver(hook, initial_step=7)
  for _ in range(18):
    clock.now += 1.0
    driver.step(1.0)
  driver.close()
  assert _steps(stream) == [8, 10, 20, 25]
  # a second session (another train call) reports its first step again
  driver = Driver(hook, initial_step=12)
  for _ in range(3):
    clock.now += 1.0
    driver.step(1.0)
  driver.close()
  assert _steps(stream) == [8, 10, 20, 25, 13]


def test_a_tpu_loop_of_100_steps_per_run_counts_100_steps(clock):
  """TPUEstimator runs iterations_per_loop (100) steps per session run, and fewer
  in the last loop: steps, tokens/s and ETA count every step."""
  stream = io.StringIO()
  driver = Driver(ProgressHook(tokens_per_step=65536, train_steps=250,
                               every_n_steps=10, stream=stream))
  for steps, loss in ((100, 6.0), (100, 5.0), (50, 4.5)):
    clock.now += 2.0                       # each loop takes 2 s
    driver.step(loss, steps=steps)
  driver.close()
  assert _lines(stream) == [
      # the first loop includes start-up
      "[train] step 100/250 loss 6.0000 (first step: 2.0 s with start-up; "
      "tokens/s and ETA from the next report)",
      # 100 steps in 2 s: 50 steps/s x 65,536 tokens; ETA 50 / 50 = 1 s
      "[train] step 200/250 loss 5.0000 tokens/s 3,276,800 ETA 0:00:01",
      # the last loop runs the 50 steps left: 25 steps/s
      "[train] step 250/250 loss 4.5000 tokens/s 1,638,400 ETA 0:00:00",
  ]


def test_reports_when_a_run_crosses_a_multiple_of_every_n_steps(clock):
  stream = io.StringIO()
  driver = Driver(ProgressHook(1, train_steps=40, every_n_steps=10, stream=stream))
  for steps in (3, 4, 4, 4, 4, 6, 15):     # steps 3, 7, 11, 15, 19, 25, 40
    clock.now += 1.0
    driver.step(1.0, steps=steps)
  driver.close()
  assert _steps(stream) == [3, 11, 25, 40]


def test_each_report_is_a_json_line_in_the_log(clock, tmp_path):
  log = tmp_path / "train_progress.jsonl"
  stream = io.StringIO()
  hook = ProgressHook(100, train_steps=4, every_n_steps=2, log_path=str(log),
                      stream=stream)
  clock.now = 50.0
  driver = Driver(hook)
  for step, (now, loss) in enumerate([(51.0, 4.0), (53.0, 3.5), (54.0, 3.25),
                                      (54.5, 3.0)], start=1):
    clock.now = now
    driver.step(loss)
  driver.close()
  records = [json.loads(line) for line in log.read_text().splitlines()]
  assert records == [
      {"step": 1, "loss": 4.0, "tokens_per_sec": 100.0, "time": 51.0},
      {"step": 2, "loss": 3.5, "tokens_per_sec": 50.0, "time": 53.0},
      {"step": 4, "loss": 3.0, "tokens_per_sec": pytest.approx(400 / 3),
       "time": 54.5},   # 2 steps in 1.5 s
  ]
  assert _steps(stream) == [1, 2, 4]
  # a later session (resumed from step 3) appends to the same log
  driver = Driver(hook, initial_step=3)
  clock.now = 60.0
  driver.step(2.0)
  driver.close()
  assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [
      1, 2, 4, 4]


def test_a_bucket_log_path_is_not_appended_to(clock, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  opened = []
  monkeypatch.setattr(progress, "open", lambda *a, **k: opened.append(a),
                      raising=False)
  stream = io.StringIO()
  driver = Driver(ProgressHook(8, train_steps=2, every_n_steps=1,
                               log_path="gs://bucket/run/train_progress.jsonl",
                               stream=stream))
  for _ in range(2):
    clock.now += 1.0
    driver.step(1.0)
  driver.close()
  assert _steps(stream) == [1, 2]   # still printed
  assert opened == [] and list(tmp_path.iterdir()) == []


def test_a_local_log_path_goes_through_open(clock, tmp_path, monkeypatch):
  """The control for the bucket test: the same stub sees local appends."""
  opened = []
  real_open = open
  monkeypatch.setattr(progress, "open",
                      lambda *a, **k: opened.append(a) or real_open(*a, **k),
                      raising=False)
  log = str(tmp_path / "log.jsonl")
  driver = Driver(ProgressHook(8, train_steps=2, every_n_steps=1, log_path=log,
                               stream=io.StringIO()))
  clock.now += 1.0
  driver.step(1.0)
  driver.close()
  assert opened == [(log, "a")]


def test_in_a_monitored_session_reports_each_runs_own_loss():
  """The hook in a real MonitoredSession: the loss fetched is the run's."""
  stream = io.StringIO()
  hook = ProgressHook(32, train_steps=7, every_n_steps=3, stream=stream)
  with tf.Graph().as_default():
    step = tf.train.get_or_create_global_step()
    x = tf.placeholder(tf.float32, [])
    loss = tf.identity(2.0 * x, name="loss")
    tf.add_to_collection(tf.GraphKeys.LOSSES, loss)
    train_op = tf.assign_add(step, 1)
    with tf.train.MonitoredSession(hooks=[hook]) as sess:
      for i in range(7):
        sess.run(train_op, {x: 0.25 * (i + 1)})
  lines = _lines(stream)
  assert _steps(stream) == [1, 3, 6, 7]
  assert [LINE.fullmatch(line).group(3) for line in lines] == [
      "0.5000", "1.5000", "3.0000", "3.5000"]
  assert all(LINE.fullmatch(line).group(2) == "7" for line in lines)
  assert lines[-1].endswith("ETA 0:00:00")


def test_the_session_start_is_one_line_with_the_time_since_the_graph_began(clock):
  stream = io.StringIO()
  clock.now = 100.0
  hook = ProgressHook(8, train_steps=30, stream=stream)   # as the graph starts
  clock.now = 142.4                                       # graph and session up
  driver = Driver(hook, initial_step=10)
  driver.close()
  assert stream.getvalue().splitlines() == [
      "[train] graph built and session started in 42 s; training from step 10 "
      "to 30"]


def test_checkpoint_saves_are_kept_out_of_tokens_per_second_and_in_the_eta(clock):
  """A save of 6 s between steps 4 and 5: the rate is that of the steps alone,
  and the ETA adds the saves still to come at the measured 6 s each."""
  stream = io.StringIO()
  timer = progress.SaveTimer()
  hook = ProgressHook(tokens_per_step=100, train_steps=20, every_n_steps=5,
                      stream=stream, save_timer=timer, save_every=5)
  driver = Driver(hook)
  clock.now += 1.0
  driver.step(1.0)                        # step 1
  for step in range(2, 11):
    clock.now += 1.0                      # each step 1 s
    driver.step(1.0)
    if step in (4, 9):                    # CheckpointSaverHook saving, 6 s
      timer.before_save(None, step)
      clock.now += 6.0
      timer.after_save(None, step)
  driver.close()
  lines = _lines(stream)
  assert timer.saves == 2 and timer.seconds == pytest.approx(12.0)
  # steps 2-5: 4 steps in 4 s of training (10 s of wall time): 100 tokens/s;
  # ETA: 15 steps at 1 step/s, plus 3 saves (at 10, 15, 20) of 6 s: 33 s
  assert lines[1] == "[train] step 5/20 loss 1.0000 tokens/s 100 ETA 0:00:33"
  # steps 6-10, the save at 9 left out: 10 steps left, 2 saves: 22 s
  assert lines[2] == "[train] step 10/20 loss 1.0000 tokens/s 100 ETA 0:00:22"


def test_the_eta_rate_moves_with_the_last_reports(clock):
  """A slow start does not hold the ETA up for long: the rate is that of the
  last RATE_WINDOW reports."""
  stream = io.StringIO()
  driver = Driver(ProgressHook(1, train_steps=100, every_n_steps=1, stream=stream))
  for i in range(12):
    clock.now += 10.0 if i < 4 else 1.0    # three slow steps after the first
    driver.step(1.0)
  driver.close()
  last = LINE.fullmatch(_lines(stream)[-1])
  # the window holds steps 8-12, 1 s each: 88 steps left
  assert last.group(5, 6, 7) == ("0", "01", "28")


def test_ctrl_c_in_a_session_stops_after_that_step_and_restores_the_handler():
  """SIGINT while a step runs: the step ends, is reported, and the session stops
  (a MonitoredSession's stop request); the handler before is back afterwards."""
  import os
  import signal
  before = signal.getsignal(signal.SIGINT)
  stream = io.StringIO()
  hook = ProgressHook(1, train_steps=100, every_n_steps=50, stream=stream)
  ran = []
  with tf.Graph().as_default():
    step = tf.train.get_or_create_global_step()
    tf.add_to_collection(tf.GraphKeys.LOSSES, tf.constant(1.5))
    train_op = tf.assign_add(step, 1)
    with progress.StopOnInterrupt(hook, stream) as interrupt:
      with tf.train.MonitoredSession(hooks=[hook]) as sess:
        while not sess.should_stop():
          sess.run(train_op)
          ran.append(1)
          if len(ran) == 7:
            os.kill(os.getpid(), signal.SIGINT)   # handled between two runs
      assert signal.getsignal(signal.SIGINT) != before
  assert signal.getsignal(signal.SIGINT) == before
  assert interrupt.interrupted and hook.last_step == 8 and len(ran) == 8
  text = stream.getvalue()
  assert "[train] Ctrl-C: stopping after the current step" in text
  assert _lines(stream)[-1].startswith("[train] step 8/100 loss 1.5000 ")
  assert _lines(stream)[-1].endswith("; stopping here (Ctrl-C)")


def test_ctrl_c_before_the_session_or_twice_interrupts_at_once():
  import os
  import signal
  hook = ProgressHook(1, train_steps=10, stream=io.StringIO())
  with pytest.raises(KeyboardInterrupt):
    with progress.StopOnInterrupt(hook):
      os.kill(os.getpid(), signal.SIGINT)      # the graph is still building
      for _ in range(100):
        pass
  hook.in_session = True
  with pytest.raises(KeyboardInterrupt):
    with progress.StopOnInterrupt(hook, io.StringIO()) as interrupt:
      os.kill(os.getpid(), signal.SIGINT)      # asks to stop after the step
      for _ in range(100):
        pass
      assert interrupt.interrupted and hook.stop_requested
      os.kill(os.getpid(), signal.SIGINT)      # again: at once
      for _ in range(100):
        pass


def test_describe_run_names_what_the_user_chose(tmp_path):
  run = tmp_path / "run"
  run.mkdir()
  (run / "primer_mtf_run.json").write_text(json.dumps(
      {"kind": "pretraining", "model": "primer_ez", "size": "tiny",
       "corpus": "kjv", "vocab_size": 4096}))
  assert progress.describe_run(str(run)) == (
      "primer_ez tiny (corpus kjv, 4,096-piece vocabulary)")
  tuned = tmp_path / "tuned"
  tuned.mkdir()
  (tuned / "primer_mtf_run.json").write_text(json.dumps(
      {"kind": "finetuning", "pretrained_dir": "/x/runs/ez/", "pretrained_step": 300,
       "task": "kjv_book", "format": "prefix"}))
  assert progress.describe_run(str(tuned)) == (
      "ez (step 300) fine-tuned on kjv_book (prefix format)")
