"""Checks of a run's settings made before any expensive work (data, compilation, restore).

Each failure is a `ConfigError` naming the setting and a value that works, so a typo
costs seconds, not a crash after the first step (e.g. EVAL_PERIOD=0 used to divide by
zero once the first step had run).
"""

import math
import os
from typing import Optional

from model_zoo.errors import ConfigError


def positive_int(
    value: object, setting: str, *, none_means: Optional[str] = None, hint: str = ""
) -> None:
  """`value` must be an int >= 1 (or None when `none_means` says what None does)."""
  if value is None and none_means is not None:
    return
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    also = f", or None ({none_means})" if none_means else ""
    hint = f"; {hint}" if hint else ""
    raise ConfigError(f"{setting}={value!r}: expected a whole number >= 1{also}{hint}.")


def positive_rate(value: object, setting: str) -> None:
  """A learning rate: a finite number > 0."""
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    raise ConfigError(f"{setting}={value!r}: expected a finite number > 0, e.g. 1e-3.")
  if value <= 0:
    raise ConfigError(
        f"{setting}={value!r}: a learning rate must be > 0 (a negative one climbs the loss), "
        "e.g. 1e-3."
    )


def non_negative_int(value: object, setting: str) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < 0:
    raise ConfigError(f"{setting}={value!r}: expected a whole number >= 0.")


def model_dir(path: object) -> None:
  """MODEL_DIR must name a directory (existing or to be made), not a file."""
  if not isinstance(path, str) or not path:
    raise ConfigError(
        f"MODEL_DIR={path!r}: expected a directory path, e.g. --gin.MODEL_DIR=\"'/tmp/run'\"."
    )
  if os.path.exists(path) and not os.path.isdir(path):
    raise ConfigError(
        f"MODEL_DIR={path!r} is a file, not a directory; set --gin.MODEL_DIR to a directory "
        "(it is created if missing)."
    )


def warmup_warning(schedule: object, train_steps: int) -> Optional[str]:
  """A warning when the learning rate is still warming up at the run's last step."""
  warmup = getattr(schedule, "warmup_steps", 0)
  if warmup <= train_steps:
    return None
  name = getattr(schedule, "gin_name", "the schedule")
  return (
      f"The learning rate warms up over {warmup} steps but TRAIN_STEPS={train_steps}: it "
      f"never reaches its peak, so the run learns little. Set "
      f"--gin.{name}.warmup_steps to a fraction of TRAIN_STEPS (e.g. "
      f"{max(1, train_steps // 10)}), or start from gin/runs/quickstart.gin's short-run recipe."
  )
