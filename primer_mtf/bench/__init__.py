"""``primer-mtf bench``: timings and memory of the stack, beside their targets.

One module a job: ``harness`` times arms side by side; ``train_step`` builds the
training step ``utils.run`` builds; ``decoding`` decodes as ``primer-mtf sample``
does; ``profile`` splits a step's time by part of the model; ``records`` finds
the recorded results; ``sections`` is the table of what is measured; ``report``
writes the figures; ``runner`` runs the chosen sections.
"""
