"""``python -m primer_mtf``: the same command as ``primer-mtf``."""
import sys

from primer_mtf.cli import main

sys.exit(main())
