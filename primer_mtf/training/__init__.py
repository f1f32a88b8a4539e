"""Code that runs inside training: the progress hook, the divergence guard, events and checkpoint reading.

Nothing here parses flags or prints a command's result; the commands in
``primer_mtf.commands`` build on it.
"""
