"""``primer-mtf bench``: timings and memory of the stack, read beside their recorded targets."""
