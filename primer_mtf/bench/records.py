"""The recorded results ``bench`` reads, and the checkout's scripts it can rerun.

The records are committed under ``benchmarks/results/``; the ones ``bench``
reads are also installed with the package (setup.py copies them into
``primer_mtf/bench/records/``), so an installed ``primer-mtf bench`` works in any
folder. From a checkout (``PYTHONPATH=.``) they are read where they are committed.
"""
import json
import os

from primer_mtf.errors import UsageError

COMPARE = "compare_tiny_six_models_3_seeds.json"
SCALING = "scaling_transformer_primer_ez.json"
MEMORY = "planner_memory_tiny_small_medium.json"
NAMES = (COMPARE, SCALING, MEMORY)   # setup.py installs these

COMMITTED = os.path.join("benchmarks", "results")
_HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGED = os.path.join(_HERE, "records")
# the source checkout around the package, when it is run from one
CHECKOUT = os.path.dirname(os.path.dirname(_HERE))


def folder():
  """Where the records are: in the installed package, else in the checkout."""
  for candidate in (PACKAGED, os.path.join(CHECKOUT, COMMITTED)):
    if all(os.path.isfile(os.path.join(candidate, n)) for n in NAMES):
      return candidate
  raise UsageError(f"bench's recorded results ({', '.join(NAMES)}) are in neither "
                   f"{PACKAGED} nor {os.path.join(CHECKOUT, COMMITTED)}; reinstall "
                   "primer-mtf, or run from its checkout")


def load(name):
  """A record's content and the path it was read from."""
  path = os.path.join(folder(), name)
  with open(path) as f:
    return json.load(f), path


def checkout_script(name):
  """``benchmarks/NAME`` of a source checkout (around the package, else the
  working folder), and the checkout's root; one line if there is none: the
  scripts are not installed with the package."""
  for root in (CHECKOUT, os.getcwd()):
    path = os.path.join(root, "benchmarks", name)
    if os.path.isfile(path):
      return path, root
  raise UsageError(f"this reruns benchmarks/{name}, which is in primer-mtf's source "
                   "checkout, not the installed package; run it from the checkout, "
                   "or leave the flag out to read the recorded figures")
