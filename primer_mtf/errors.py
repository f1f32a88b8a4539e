"""The exception types a user sees: a one-line message that says what to fix."""


class UsageError(Exception):
  """Bad input from the user. The CLI prints it as one line and exits with 2."""


class DataNotPrepared(UsageError):
  """A TFDS dataset is not prepared where it is looked for.

  Its own type so that a caller can skip the data it lacks (``score`` skips a
  SuperGLUE task and scores the rest) without reading the message."""
