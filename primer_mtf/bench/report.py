"""What ``bench`` writes: a figure's record, the machine, and the JSON, the
markdown table and the bar chart of a run."""
import json
import os
import platform

from primer_mtf import files


def figure(key, what, r, target=None, met=None, source="measured now"):
  """One figure: a ratio's median and range (``harness.ratio``'s shape), its
  wall-clock counterpart, its target and where it comes from."""
  wall = r.get("wall", {}).get("median")
  return {"key": key, "what": what, "value": r["median"], "min": r.get("min"),
          "max": r.get("max"), "rounds": r.get("rounds"), "wall_clock_value": wall,
          "wall_clock_min": r.get("wall", {}).get("min"),
          "wall_clock_max": r.get("wall", {}).get("max"), "target": target,
          "met": met, "source": source}


def machine():
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  model = None
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          model = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  return {"cores": os.cpu_count(), "cpu_model": model or platform.processor(),
          "load_average_at_start": os.getloadavg(),
          "tensorflow": tf.__version__, "python": platform.python_version()}


def markdown(result):
  lines = ["| figure | value: median (range) over rounds | wall-clock | target | "
           "met? |", "|---|---|---|---|---|"]
  for f in result["figures"]:
    spread = (f" ({f['min']:.2f}-{f['max']:.2f})"
              if f.get("min") is not None and f.get("max") is not None else "")
    met = {True: "yes", False: "no", None: "record"}[f["met"]]
    if f["source"] == "recorded":
      met += " (recorded)"
    wall = (f"{f['wall_clock_value']:.3g} ({f['wall_clock_min']:.2f}-"
            f"{f['wall_clock_max']:.2f})" if f.get("wall_clock_value") else "-")
    lines.append(f"| {f['what']} | {f['value']:.3g}{spread} | {wall} | "
                 f"{f['target'] or '-'} | {met} |")
  for key, why in result["not_measured"].items():
    lines.append(f"| {key} | not measured: {why} | - | - | - |")
  return "\n".join(lines) + "\n"


def plot(result, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  figs = result["figures"]
  fig, ax = plt.subplots(figsize=(8, 0.45 * len(figs) + 1.2))
  y = np.arange(len(figs))[::-1]
  values = [f["value"] for f in figs]
  colors = ["C2" if f["met"] else "C3" if f["met"] is False else "C0" for f in figs]
  ax.barh(y, values, color=colors, alpha=0.8)
  for yi, f in zip(y, figs):
    if f.get("min") is not None and f.get("max") is not None:
      ax.plot([f["min"], f["max"]], [yi, yi], color="k", linewidth=1)
    if f["target"]:
      t = float(f["target"].split()[-1])
      ax.plot([t, t], [yi - 0.4, yi + 0.4], color="k", linestyle="--")
  ax.set_yticks(y)
  ax.set_yticklabels([f["key"] for f in figs], fontsize=8)
  ax.set_xscale("log")
  ax.axvline(1.0, color="gray", linewidth=0.8)
  ax.set_xlabel("ratio (log scale); dashed: target; green met, red not, blue record")
  ax.set_title(f"primer-mtf bench ({result['mode']})")
  ax.grid(alpha=0.3, axis="x", which="both")
  files.save_figure(fig, path)
  plt.close(fig)


def write(result, out):
  """bench.json, bench.md and bench.png in ``out``; returns their paths."""
  paths = [os.path.join(out, n) for n in ("bench.json", "bench.md", "bench.png")]
  with files.replaced(paths[0]) as f:
    json.dump(result, f, indent=1, default=float)
  with files.replaced(paths[1]) as f:
    f.write(markdown(result))
  plot(result, paths[2])
  return paths
