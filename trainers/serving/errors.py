"""What a serving request can be refused with: each error carries its HTTP status (and a
Retry-After for the transient ones); its message is what the client sees, so it names the
problem and the fix and never holds internals."""

from typing import Optional

from model_zoo.errors import UserError


class ServingError(UserError):
  status = 400
  retry_after_s: Optional[float] = None


class BadRequest(ServingError):
  """A malformed request: a missing or ill-typed field, a prompt too long, a bound passed."""


class Unauthorized(ServingError):
  status = 401


class UnknownModel(ServingError):
  status = 404


class TooLarge(ServingError):
  status = 413


class Overloaded(ServingError):
  """Every queue of the model is full: try again shortly."""

  status = 429
  retry_after_s = 1.0


class Unavailable(ServingError):
  """Not served: its SLO could not be met, or the server is shutting down."""

  status = 503

  def __init__(self, message: str, retry_after_s: Optional[float] = 1.0):
    super().__init__(message)
    self.retry_after_s = retry_after_s
