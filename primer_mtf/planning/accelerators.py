"""What a mesh runs on: peak FLOP/s and memory per mesh device, bound by gin/meshes/.

Its own module so that training reads the binding without importing the planner.
"""

import gin

from primer_mtf import configs
from primer_mtf.errors import UsageError

GiB = 1 << 30
# Peak dense bf16 FLOP/s and memory per mesh device (a TPU v3 core, a v4, v5e or
# v5p chip, a GPU; Cloud TPU's published figures). The CPU's are nominal: plan there for memory, not speed.
ACCELERATORS = {
    "tpu_v3": (61.5e12, 16 * GiB),
    "tpu_v4": (275e12, 32 * GiB),
    "tpu_v5e": (197e12, 16 * GiB),   # one TensorCore a chip
    "tpu_v5p": (459e12, 95 * GiB),   # a megacore chip, as v4
    "gpu_a100_80g": (312e12, 80 * GiB),
    "gpu_h100_80g": (989e12, 80 * GiB),
    "cpu": (1e12, 24 * GiB),
}


@gin.configurable("accelerator", module="primer_mtf")
def accelerator(kind="cpu", tpu_topology=None):
  """The mesh's device kind; a TPU slice's topology defaults to the one that
  ``utils.tpu_mesh_shape`` is given (v4 meshes, which list their shape, name it)."""
  if kind not in ACCELERATORS:
    raise UsageError(f"unknown accelerator {kind!r}; one of {sorted(ACCELERATORS)}")
  if tpu_topology is None and kind.startswith("tpu"):
    tpu_topology = configs.query("utils.tpu_mesh_shape.tpu_topology")
  return {"kind": kind, "tpu_topology": tpu_topology,
          "peak_flops": ACCELERATORS[kind][0], "memory": ACCELERATORS[kind][1]}
