"""User-facing errors: the CLIs print these as one clear message and exit non-zero."""


class TrainingDivergedError(RuntimeError):
  """The loss became NaN or Inf."""
