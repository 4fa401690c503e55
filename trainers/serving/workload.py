"""Request traces: Gamma arrival processes per model (a rate and a coefficient of variation,
CV, as AlpaServe's workloads: CV 1 is Poisson, larger CVs are burstier) and recorded
traces replayed from JSON Lines. The simulator and the load generator read the same Trace."""

import dataclasses
import json
import os
from typing import Mapping, Sequence

import numpy as np

from model_zoo.errors import ConfigError, MissingFileError
from trainers.infer_outputs import write_jsonl


@dataclasses.dataclass(frozen=True)
class Trace:
  """Requests in arrival order: `times[i]` (seconds from the start) asks for
  `model_names[models[i]]`."""

  times: np.ndarray
  models: np.ndarray
  model_names: tuple[str, ...]

  def __post_init__(self):
    if len(self.times) != len(self.models):
      raise ConfigError(
          f"a trace needs a model per time: {len(self.times)} times, {len(self.models)} models"
      )
    if len(self.times) and np.any(np.diff(self.times) < 0):
      raise ConfigError("a trace's times must be in arrival order")

  def __len__(self) -> int:
    return len(self.times)

  @property
  def duration(self) -> float:
    return float(self.times[-1]) if len(self.times) else 0.0


@dataclasses.dataclass(frozen=True)
class GammaProcess:
  """Arrivals whose gaps are Gamma distributed with mean 1/rate and the given CV."""

  rate: float
  cv: float

  def __post_init__(self):
    if self.rate <= 0 or self.cv <= 0:
      raise ConfigError(f"a Gamma process needs rate > 0 and cv > 0; got {self}")

  def arrivals(self, duration: float, rng: np.random.Generator) -> np.ndarray:
    shape = 1.0 / self.cv**2  # a Gamma(k, theta) gap has CV 1/sqrt(k) and mean k * theta
    scale = 1.0 / (self.rate * shape)
    chunks, end = [], 0.0
    while end < duration:
      chunk = end + np.cumsum(rng.gamma(shape, scale, size=int(self.rate * duration) + 16))
      chunks.append(chunk)
      end = chunk[-1]
    times = np.concatenate(chunks)
    return times[times < duration]


def gamma_trace(processes: Mapping[str, GammaProcess], duration: float, seed: int = 0) -> Trace:
  """Each model's own Gamma arrivals over `duration` seconds, merged in time order."""
  if duration <= 0:
    raise ConfigError(f"a trace's duration must be > 0 seconds; got {duration}")
  rng = np.random.default_rng(seed)
  names = tuple(processes)
  per_model = [processes[name].arrivals(duration, rng) for name in names]
  times = np.concatenate(per_model)
  models = np.concatenate([np.full(len(t), i) for i, t in enumerate(per_model)])
  order = np.argsort(times, kind="stable")
  return Trace(times[order], models[order].astype(np.int64), names)


def save(trace: Trace, path: str | os.PathLike) -> None:
  """Writes `{"time": seconds, "model": name}` a request a line, all or nothing."""
  write_jsonl(
      os.path.abspath(path),
      (
          {"time": float(t), "model": trace.model_names[m]}
          for t, m in zip(trace.times, trace.models)
      ),
  )


def load(path: str | os.PathLike, model_names: Sequence[str] | None = None) -> Trace:
  """A recorded trace (JSON Lines of time and model); sorted by time. With `model_names`,
  a request for another model is an error naming it."""
  if not os.path.exists(path):
    raise MissingFileError(f"no trace at {path}")
  times, names = [], []
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
        times.append(float(record["time"]))
        names.append(str(record["model"]))
      except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(
            f'{path}:{number}: expected {{"time": seconds, "model": name}}; {e}'
        ) from e
  known = tuple(model_names) if model_names is not None else tuple(dict.fromkeys(names))
  unknown = sorted(set(names) - set(known))
  if unknown:
    raise ConfigError(f"{path} asks for models {unknown}, which are not among {list(known)}")
  index = {name: i for i, name in enumerate(known)}
  order = np.argsort(np.asarray(times, dtype=np.float64), kind="stable")
  return Trace(
      np.asarray(times, dtype=np.float64)[order],
      np.asarray([index[n] for n in names], dtype=np.int64)[order],
      known,
  )
