"""Stylus's composer: the prompt split into keywords (its sub-tasks), and for each keyword at
most k of the retrieved adapters, those that fit it best; an adapter that fits no keyword is
rejected.

Fit is measured, not guessed: `score(adapter, text)` is the mean log-likelihood per token of
`text` under the base model with that adapter merged (None: the base alone), and an adapter
fits a keyword by how much it raises the keyword's likelihood over the base model's. A fit at
or below `min_gain` nats per token is no fit.
"""

import dataclasses
import re
from typing import Callable, Mapping, Optional, Sequence

from model_zoo.errors import ConfigError

Score = Callable[[Optional[str], str], float]  # (adapter or None for the base, text) -> nats/token
_SEPARATORS = re.compile(r"\s*(?:[,;\n]|\band\b|\bthen\b)\s*")


def split_keywords(prompt: str) -> list[str]:
  """The prompt's keywords: its phrases between commas, semicolons, newlines, "and" and
  "then", each once, in order; the whole prompt when it has no separator."""
  keywords = []
  for phrase in _SEPARATORS.split(prompt):
    phrase = phrase.strip()
    if phrase and phrase not in keywords:
      keywords.append(phrase)
  if not keywords:
    raise ConfigError("the prompt is empty: there is nothing to choose adapters for")
  return keywords


@dataclasses.dataclass(frozen=True)
class Composition:
  """keyword -> its adapters (best first); each candidate's gain per keyword; the rejected."""

  assignment: dict[str, list[str]]
  gains: dict[str, dict[str, float]]
  rejected: list[str]

  def why(self) -> list[str]:
    """One line per keyword and per rejected adapter, saying why."""
    lines = []
    for keyword, kept in self.assignment.items():
      shown = ", ".join(f"{a} (+{self.gains[keyword][a]:.3f} nats/token)" for a in kept)
      lines.append(f"{keyword!r}: {shown or 'no adapter fits; the base model'}")
    for adapter in self.rejected:
      best = max(self.gains[k][adapter] for k in self.gains)
      lines.append(f"rejected {adapter}: kept for no keyword (best gain {best:+.3f} nats/token)")
    return lines


def compose(
    keywords: Sequence[str],
    candidates: Sequence[str],
    score: Score,
    per_keyword: int = 2,
    min_gain: float = 0.0,
) -> Composition:
  """For each keyword, the (at most `per_keyword`) candidates of largest gain above
  `min_gain`; ties by candidate order."""
  if per_keyword < 1:
    raise ConfigError(f"the composer keeps at most k adapters per keyword; k={per_keyword} < 1")
  gains: dict[str, dict[str, float]] = {}
  assignment: dict[str, list[str]] = {}
  for keyword in keywords:
    base = score(None, keyword)
    gains[keyword] = {a: score(a, keyword) - base for a in candidates}
    fitting = [a for a in candidates if gains[keyword][a] > min_gain]
    fitting.sort(key=lambda a: -gains[keyword][a])  # stable: ties keep candidate order
    assignment[keyword] = fitting[:per_keyword]
  kept = {a for adapters in assignment.values() for a in adapters}
  return Composition(assignment, gains, [a for a in candidates if a not in kept])


def table_score(table: Mapping[tuple[Optional[str], str], float]) -> Score:
  """A `score` that looks (adapter, text) up in `table` (tests, cached scores)."""
  return lambda adapter, text: table[(adapter, text)]
