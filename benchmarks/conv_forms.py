"""Times Primer-EZ's training step with each form of MDHA's convolution, side by side.

The forms (``MDHA.conv_form``, see primer_mtf/layers/mdha.py): "pack_safe" (mtf's
shift, multiply and add ops), "fused" (the same math as one XLA-compiled op, the
default) and "release", the same taps without the packing mask, as the authors'
release computed it (it leaks across packed examples). The records
benchmarks/results/conv_forms_small_*.json were made at the commit that also had
two exact candidate forms, "shared_mask" (the masks computed once a layer for Q,
K and V) and "fused_qkv" (one stacked Q/K/V projection and one conv); neither was
cheaper, and both were removed. Each round times every form once, the order
rotating (``primer_mtf.bench.harness.interleave``); each figure is the median over
rounds of the per-round ratio of a form's step time to the pack-safe form's, in
this process's CPU seconds (wall-clock beside it). The transformer is timed in the
same rounds for the overhead over the baseline.

    PYTHONPATH=. .venv/bin/python benchmarks/conv_forms.py --out bench/conv_forms
"""
import argparse
import json
import os
import sys

from primer_mtf.bench import harness
from primer_mtf.bench import report
from primer_mtf.bench import train_step

FORMS = ("pack_safe", "fused", "release")


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--size", default="small")
  p.add_argument("--batch", type=int, default=2)
  p.add_argument("--length", type=int, default=256)
  p.add_argument("--forms", nargs="+", default=list(FORMS), choices=FORMS)
  p.add_argument("--rounds", type=int, default=15)
  p.add_argument("--steps", type=int, default=2, help="steps a timing")
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--no_transformer", action="store_true")
  p.add_argument("--out", default="bench/conv_forms")
  args = p.parse_args(argv)
  if "pack_safe" not in args.forms:
    args.forms.insert(0, "pack_safe")
  steps = train_step.Steps()
  arms = {}
  try:
    if not args.no_transformer:
      arms["transformer"] = steps.get("transformer", args.size, args.batch,
                                      args.length)
    for form in args.forms:
      arms[form] = steps.get("primer_ez", args.size, args.batch, args.length,
                             gin_params=[f"MDHA.conv_form = '{form}'"])
    harness.log(f"timing {', '.join(arms)} ({args.rounds} rounds of {args.steps} "
              "steps)")
    times = harness.interleave(
        {n: (lambda a=a: a(args.steps)) for n, a in arms.items()}, args.rounds,
        args.warmup)
    ratios = {f"{form}/pack_safe": harness.ratio(times, form, "pack_safe")
              for form in args.forms if form != "pack_safe"}
    if "release" in args.forms:
      ratios["pack_safe/release"] = harness.ratio(times, "pack_safe", "release")
    if "transformer" in arms:
      ratios.update({f"{form}/transformer": harness.ratio(times, form, "transformer")
                     for form in args.forms})
    result = {
        "command": "PYTHONPATH=. .venv/bin/python benchmarks/conv_forms.py "
                   + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": report.machine(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "ratios": ratios,
        "times": {n: harness.summary(times, n) for n in arms},
        "losses_finite": {n: a.finite() for n, a in arms.items()}}
  finally:
    steps.close()
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "conv_forms.json"), "w") as f:
    json.dump(result, f, indent=1, default=float)
  for name, r in ratios.items():
    print(f"{name}: {r['median']:.3f} ({r['min']:.2f}-{r['max']:.2f}), wall-clock "
          f"{r['wall']['median']:.3f}")
  return result


if __name__ == "__main__":
  main()
