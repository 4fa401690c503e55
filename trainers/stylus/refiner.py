"""Stylus's refiner: a description of each catalog adapter written from what is known of it
(its card: the task it trained on and its sample outputs), since the descriptions adapters
come with are often poor or missing; then the refined descriptions embedded into the index.

Extractive: the task's phrase (from `describe_task`, which knows the catalog's task names),
the language the sample outputs are in (from `language_of`, e.g. podzoo's LangID), the
outputs' most frequent words, and the author's own description, if any, last.
"""

import collections
import re
from typing import Any, Callable, Mapping, Optional, Sequence

from trainers.stylus.retriever import AdapterIndex

_WORD = re.compile(r"[^\W\d_]{3,}")  # letters only, three or more


def salient_words(texts: Sequence[str], count: int) -> list[str]:
  """The `count` most frequent words (casefolded, 3+ letters) of `texts`; ties by first use."""
  counts = collections.Counter()
  first = {}
  for text in texts:
    for word in _WORD.findall(text.casefold()):
      counts[word] += 1
      first.setdefault(word, len(first))
  return sorted(counts, key=lambda w: (-counts[w], first[w]))[:count]


def refine(
    card: Mapping[str, Any],
    describe_task: Callable[[str], str],
    language_of: Optional[Callable[[Sequence[str]], Optional[str]]] = None,
    words: int = 6,
) -> str:
  """The refined description of the adapter whose card is `card` (module docstring)."""
  outputs = [s["output"] for s in card.get("sample_outputs", []) if s.get("output")]
  parts = [describe_task(card.get("task") or "")]
  language = language_of(outputs) if language_of and outputs else None
  if language:
    parts.append(f"writes {language}")
  salient = salient_words(outputs, words)
  if salient:
    parts.append("words such as " + ", ".join(salient))
  if card.get("description"):
    parts.append(str(card["description"]))
  return ". ".join(p for p in parts if p)


def build_index(
    cards: Mapping[str, Mapping[str, Any]],
    describe: Callable[[Mapping[str, Any]], str],
    embed: Callable[[Sequence[str]], Any],
    embedder_name: str,
) -> AdapterIndex:
  """The index of the catalog: each adapter's description (`describe(card)`), embedded."""
  names = sorted(cards)
  descriptions = [describe(cards[name]) for name in names]
  return AdapterIndex.build(names, descriptions, embed(descriptions), embedder_name)
