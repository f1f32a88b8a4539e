"""Data: corpora (what a ``--corpus`` value means), vocabularies and seqio tasks."""
