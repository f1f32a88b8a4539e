"""The one exception type a user sees: a one-line message that says what to fix."""


class UsageError(Exception):
  """Bad input from the user. The CLI prints it as one line and exits with 2."""
