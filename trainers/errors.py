"""User-facing errors of the trainers (subclasses of model_zoo.errors.UserError)."""

from model_zoo.errors import UserError


class TrainingDivergedError(UserError, RuntimeError):
  """The loss became NaN or Inf: a setting (learning rate, clipping, z-loss) must change."""
