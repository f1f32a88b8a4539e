"""Running: runs (record and resume rules), training progress and checkpoint evaluation."""
