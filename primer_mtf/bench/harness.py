"""Timing arms side by side: each round times every arm once, the order rotating.

A figure is a ratio taken within a round and summarised over rounds, so what other
jobs on a shared machine do to both arms at once cancels. Times are this
process's CPU seconds (all its threads), which such jobs change far less than
wall-clock time; the wall-clock times are kept beside them.
"""
import statistics
import sys
import time


def log(message):
  print(f"[bench] {message}", file=sys.stderr, flush=True)


class Times(dict):
  """name -> seconds of each round, in CPU time of this process (all its
  threads: what the work costs, little changed by other jobs on the machine);
  ``wall`` holds the same rounds in wall-clock time."""

  def __init__(self, names):
    super().__init__({n: [] for n in names})
    self.wall = {n: [] for n in names}


def interleave(arms, rounds, warmup=1):
  """Times each callable of ``arms`` (name -> fn) once a round, ``rounds`` rounds,
  the order rotating, after ``warmup`` untimed calls of each; returns Times."""
  names = list(arms)
  for _ in range(warmup):
    for n in names:
      arms[n]()
  times = Times(names)
  for r in range(rounds):
    order = names[r % len(names):] + names[:r % len(names)]
    for n in order:
      wall, cpu = time.perf_counter(), time.process_time()
      arms[n]()
      times[n].append(time.process_time() - cpu)
      times.wall[n].append(time.perf_counter() - wall)
  return times


def _per_round(values):
  return {"median": statistics.median(values), "min": min(values),
          "max": max(values), "rounds": len(values)}


def ratio(times, numerator, denominator, fn=None):
  """Median and range over rounds of the per-round ratio of two arms (or of
  ``fn(numerator seconds, denominator seconds)``), in CPU time; the same in
  wall-clock time under ``wall``."""
  fn = fn or (lambda a, b: a / b)
  r = _per_round([fn(a, b) for a, b in zip(times[numerator], times[denominator])])
  r["wall"] = _per_round([fn(a, b) for a, b in zip(times.wall[numerator],
                                                    times.wall[denominator])])
  return r


def summary(times, name):
  """One arm's rounds and their medians, for the JSON record."""
  return {"median_cpu_seconds": statistics.median(times[name]),
          "median_wall_seconds": statistics.median(times.wall[name]),
          "cpu_seconds": times[name], "wall_seconds": times.wall[name]}
