"""The command flows: one module per ``primer-mtf`` subcommand (and the run they share)."""
