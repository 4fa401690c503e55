"""Filters that clean lines claimed to be in one language, counting what each drops.

As in the LangID-and-filtering recipes for web-crawled multilingual data (Caswell et
al., 2020; Kudugunta et al., 2023): a line is kept only if a LangID model agrees with its
claimed language confidently, enough of its words are common words of that language, it
is neither too short nor too long, it does not repeat itself, and it is not a duplicate.

`run_filters` applies the filters in order to the lines that survived the previous ones,
so every dropped line is counted once, by the first filter that drops it. The default
order puts the cheap, language-blind checks first (an empty or repeated line is reported
as such, not as a LangID failure) and dedup last (the copy kept is one that passed
everything else).
"""

import abc
import collections
import dataclasses
import re
import unicodedata
from typing import Sequence

import wordfreq

from model_zoo.errors import ConfigError
from tasks.langid import model, train
from tasks.parallel import corpus

WORD = re.compile(r"\w+(?:['’]\w+)*")
PUNCTUATION = re.compile(r"[^\w\s]+")


def words(line: str) -> list[str]:
  """Casefolded words: runs of letters/digits, apostrophes inside a word kept ("don't")."""
  return WORD.findall(line.casefold())


def _check_fraction(owner: str, name: str, value: float) -> None:
  if not 0.0 <= value <= 1.0:
    raise ConfigError(f"{owner}.{name} must be a fraction in [0, 1]; got {value!r}")


class LineFilter(abc.ABC):
  """Decides, for lines claimed to be in `lang`, which to keep."""

  name: str

  def applies_to(self, lang: str) -> bool:
    """False where the filter cannot judge `lang`; the lines then pass it untouched."""
    del lang
    return True

  @abc.abstractmethod
  def keep(self, lines: Sequence[str], lang: str) -> list[bool]:
    """One verdict per line (in order: stateful filters such as dedup see them in turn)."""


@dataclasses.dataclass
class LangIdFilter(LineFilter):
  """Keeps a line whose predicted language is the claimed one, with at least `threshold`."""

  threshold: float = 0.5
  langid: model.LangIdModel | None = None  # None: podzoo's model, trained once and cached
  name = "langid"

  def __post_init__(self):
    _check_fraction("LangIdFilter", "threshold", self.threshold)

  def keep(self, lines: Sequence[str], lang: str) -> list[bool]:
    if lang not in corpus.LANGUAGES:
      raise ConfigError(
          f"the LangID model knows {corpus.LANGUAGES}, not {lang!r}; leave LangIdFilter out "
          "of the filters for other languages"
      )
    if self.langid is None:
      self.langid = train.load_or_train()
    predicted, confidence = self.langid.predict(list(lines))
    return [p == lang and c >= self.threshold for p, c in zip(predicted, confidence)]


@dataclasses.dataclass
class WordlistFilter(LineFilter):
  """Keeps a line if at least `min_fraction` of its words are in the language's top-N words.

  Words are wordfreq's tokens that contain a letter (its lists are in its tokenisation;
  numbers are not evidence either way). A line without such words has fraction 0. A
  language wordfreq has no list for is not judged (see `applies_to`).
  """

  # Catalog text is short and full of names and technical terms, and Finnish or Russian
  # inflect a word into forms a top-N list misses: at 50% of the top 10k words, 30-57%
  # of fi/ru/de train lines fail; at 20% of the top 20k (the default) mostly lines with no
  # listed word at all do. Web lists hold common English words in every language, so
  # this filter catches junk and non-words; English under another name is LangID's job.
  min_fraction: float = 0.2
  top_n: int = 20_000
  name = "wordlist"

  def __post_init__(self):
    _check_fraction("WordlistFilter", "min_fraction", self.min_fraction)
    if self.top_n < 1:
      raise ConfigError(f"WordlistFilter.top_n must be >= 1; got {self.top_n}")
    self._lists: dict[str, frozenset[str]] = {}

  def applies_to(self, lang: str) -> bool:
    return lang in wordfreq.available_languages(wordlist="best")

  def _wordlist(self, lang: str) -> frozenset[str]:
    if lang not in self._lists:
      self._lists[lang] = frozenset(wordfreq.top_n_list(lang, self.top_n))
    return self._lists[lang]

  def in_list_fraction(self, line: str, lang: str) -> float:
    tokens = [t for t in wordfreq.tokenize(line, lang) if any(c.isalpha() for c in t)]
    if not tokens:
      return 0.0
    wordlist = self._wordlist(lang)
    return sum(t in wordlist for t in tokens) / len(tokens)

  def keep(self, lines: Sequence[str], lang: str) -> list[bool]:
    return [self.in_list_fraction(line, lang) >= self.min_fraction for line in lines]


@dataclasses.dataclass
class LengthFilter(LineFilter):
  """Keeps a line with min_chars..max_chars characters and min_words..max_words `words`."""

  min_chars: int = 2
  max_chars: int = 1000
  min_words: int = 1
  max_words: int = 200
  name = "length"

  def __post_init__(self):
    for low, high in (("min_chars", "max_chars"), ("min_words", "max_words")):
      if not 0 <= getattr(self, low) <= getattr(self, high):
        raise ConfigError(
            f"LengthFilter needs 0 <= {low} <= {high}; got {low}={getattr(self, low)}, "
            f"{high}={getattr(self, high)}"
        )

  def keep(self, lines: Sequence[str], lang: str) -> list[bool]:
    return [
        self.min_chars <= len(line) <= self.max_chars
        and self.min_words <= len(words(line)) <= self.max_words
        for line in lines
    ]


@dataclasses.dataclass
class RepetitionFilter(LineFilter):
  """Drops a line of at least `min_words` words that repeats itself.

  Two signs, after Gopher's repetition rules (Rae et al., 2021) cut down to one line:
  one word making up more than `max_word_share` of the words ("the the the the the"),
  or more than `max_repeated_bigram_share` of the word bigrams repeating an earlier one
  ("buy now buy now buy now", where no single word passes half). Shorter lines are
  left alone: "Bora Bora" and "New New York" are real.
  """

  min_words: int = 4
  max_word_share: float = 0.5
  max_repeated_bigram_share: float = 0.5
  name = "repetition"

  def __post_init__(self):
    _check_fraction("RepetitionFilter", "max_word_share", self.max_word_share)
    _check_fraction("RepetitionFilter", "max_repeated_bigram_share", self.max_repeated_bigram_share)
    if self.min_words < 2:
      raise ConfigError(f"RepetitionFilter.min_words must be >= 2; got {self.min_words}")

  def repeats(self, line: str) -> bool:
    tokens = words(line)
    if len(tokens) < self.min_words:
      return False
    top_word_count = collections.Counter(tokens).most_common(1)[0][1]
    bigrams = list(zip(tokens, tokens[1:]))
    repeated = len(bigrams) - len(set(bigrams))  # occurrences after each bigram's first
    return (
        top_word_count / len(tokens) > self.max_word_share
        or repeated / len(bigrams) > self.max_repeated_bigram_share
    )

  def keep(self, lines: Sequence[str], lang: str) -> list[bool]:
    return [not self.repeats(line) for line in lines]


def dedup_key(line: str) -> str:
  """The line casefolded (NFKC), punctuation removed and whitespace collapsed."""
  line = unicodedata.normalize("NFKC", line).casefold()
  return " ".join(PUNCTUATION.sub(" ", line).split())


class DedupFilter(LineFilter):
  """Keeps the first line of each `dedup_key`; later ones are duplicates."""

  name = "dedup"

  def keep(self, lines: Sequence[str], lang: str) -> list[bool]:
    seen = set()
    verdicts = []
    for line in lines:
      key = dedup_key(line)
      verdicts.append(key not in seen)
      seen.add(key)
    return verdicts


def default_filters(langid: model.LangIdModel | None = None) -> list[LineFilter]:
  """Every filter with its default thresholds, in the default order (see the module doc)."""
  return [
      LengthFilter(),
      RepetitionFilter(),
      LangIdFilter(langid=langid),
      WordlistFilter(),
      DedupFilter(),
  ]


@dataclasses.dataclass(frozen=True)
class FilterReport:
  """What a filter run did to one language's lines."""

  lang: str
  filter_names: tuple[str, ...]
  lines: tuple[str, ...]
  reasons: tuple[str | None, ...]  # per line: the filter that dropped it, None when kept
  not_applied: tuple[str, ...]  # filters that could not judge this language

  @property
  def dropped(self) -> dict[str, int]:
    """Filter name -> lines it dropped, in pipeline order."""
    counts = collections.Counter(self.reasons)
    return {name: counts[name] for name in self.filter_names}

  @property
  def kept(self) -> list[str]:
    return [line for line, reason in zip(self.lines, self.reasons) if reason is None]

  def summary(self, examples: int = 3) -> dict:
    """Counts for a JSON report, with the first `examples` lines each filter dropped."""
    return {
        "lines": len(self.lines),
        "kept": len(self.kept),
        "dropped": self.dropped,
        "not_applied": list(self.not_applied),
        "examples": {
            name: [line for line, r in zip(self.lines, self.reasons) if r == name][:examples]
            for name in self.filter_names
        },
    }


def run_filters(lines: Sequence[str], lang: str, filters: Sequence[LineFilter]) -> FilterReport:
  """Applies `filters` in order; each sees only the lines every earlier filter kept."""
  names = [f.name for f in filters]
  if len(set(names)) != len(names):
    raise ConfigError(f"filter names must be distinct to count drops per filter; got {names}")
  reasons: list[str | None] = [None] * len(lines)
  not_applied = []
  for line_filter in filters:
    if not line_filter.applies_to(lang):
      not_applied.append(line_filter.name)
      continue
    alive = [i for i, reason in enumerate(reasons) if reason is None]
    verdicts = line_filter.keep([lines[i] for i in alive], lang)
    for i, keep in zip(alive, verdicts):
      if not keep:
        reasons[i] = line_filter.name
  return FilterReport(lang, tuple(names), tuple(lines), tuple(reasons), tuple(not_applied))


def format_table(reports: Sequence[FilterReport]) -> str:
  """Lines dropped per filter (rows: languages, then the total), and what is left."""
  if not reports:
    return "(no languages)"
  names = reports[0].filter_names
  header = ["lang", "lines", *names, "kept", "kept %"]
  rows = []
  totals = collections.Counter()
  for report in reports:
    counts = {"lines": len(report.lines), **report.dropped, "kept": len(report.kept)}
    totals.update(counts)
    cells = [str(counts[n]) + ("*" if n in report.not_applied else "") for n in header[1:-1]]
    rows.append([report.lang, *cells, f"{100 * counts['kept'] / max(counts['lines'], 1):.1f}"])
  kept_percent = 100 * totals["kept"] / max(totals["lines"], 1)
  rows.append(["all", *(str(totals[n]) for n in header[1:-1]), f"{kept_percent:.1f}"])
  widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
  text = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header, *rows]]
  if any(r.not_applied for r in reports):
    text.append("* filter not applied to this language (e.g. no wordfreq list)")
  return "\n".join(text)
