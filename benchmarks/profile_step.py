"""Where a training step's time goes: one traced step, its ops' times by part of
the model.

Builds the training step ``primer-mtf bench`` times (``primer_mtf.bench.train_step``:
the step ``utils.run`` builds from the gin configuration, on a fixed packed batch,
on one CPU device) for each arm, then traces steps with
TensorFlow's step stats (``RunOptions.FULL_TRACE``), the arms interleaved. Each
TensorFlow op is assigned to the mesh-tensorflow operation it was lowered from
(its name scope; a gradient op to the forward op it differentiates, an
optimizer op to Adafactor), and that operation to a part of the model:

* attention: projections (the einsums with W_Q, W_K, W_V, W_O, W_s), scores
  (Q K^T), weighted values (A V), softmax, and the rest (relative bias, masks,
  reshapes);
* dconv: MDHA's convolution (shifts, tap products, packing masks and their sums);
* ffn: its two matmuls, and activation and biases;
* norms; embedding and loss (the input embedding, the logits matmul, the
  softmax cross-entropy over the vocabulary); optimizer (Adafactor's updates);
* other: what matches none (variable reads, the global step, executor glue).

Every part is split into compute ops and layout ops (Transpose, Reshape,
ExpandDims, Pad, Slice, ConcatV2, Identity, ReadVariableOp...: data movement
that mesh-tensorflow's lowering adds around the math; the conv's shifts are Pad
and Slice, counted with the conv). For each arm and part the figure is the median
over traces of the summed op times (each op's elapsed time; ops on the two
inter-op threads overlap, so the sum exceeds the step's wall time, reported beside
it). The input pipeline is not in this step (a fixed batch); ``primer-mtf bench``'s
``input_pipeline_*`` figures measure it against the step.

The classification and tracing live in ``primer_mtf/bench/profile.py``; this is its
command line.

    PYTHONPATH=. .venv/bin/python benchmarks/profile_step.py --out bench/profile
"""
import argparse
import json
import os
import sys

from primer_mtf.bench import profile
from primer_mtf.bench import report
from primer_mtf.bench import train_step

def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--size", default="small")
  p.add_argument("--batch", type=int, default=2)
  p.add_argument("--length", type=int, default=256)
  p.add_argument("--arms", nargs="+", default=["transformer", "primer_ez",
                                               "primer_ez:release"],
                 help="MODEL or MODEL:CONV_FORM")
  p.add_argument("--traces", type=int, default=5)
  p.add_argument("--rounds", type=int, default=15,
                 help="untraced interleaved rounds (one step an arm a round)")
  p.add_argument("--out", default="bench/profile")
  args = p.parse_args(argv)
  steps = train_step.Steps()
  try:
    measured = profile.measure(steps, args.size, args.batch, args.length, args.arms,
                               args.traces, args.rounds)
  finally:
    steps.close()
  result = {"command": "PYTHONPATH=. .venv/bin/python benchmarks/profile_step.py "
                       + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": report.machine(),
            "settings": {k: v for k, v in vars(args).items() if k != "out"},
            **measured}
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "profile_step.json"), "w") as f:
    json.dump(result, f, indent=1)
  with open(os.path.join(args.out, "profile_step.md"), "w") as f:
    f.write(profile.markdown(result))
  print(profile.markdown(result))
  return result


if __name__ == "__main__":
  main()
