"""A many-way parallel corpus in every language the machine's gettext catalogs carry well.

Every Debian machine ships the same English messages translated by hand into dozens of
languages: GLib/GTK 2 UI strings and property descriptions, keyboard layout names, and
the ISO names of countries, languages, currencies and scripts. Read side by side, they
are a real many-way parallel corpus, offline. Nothing is downloaded or shipped.

A record is one catalog message: its English source (the msgid) and its translations.
Written form is kept (case, punctuation; NFKC-normalised); only what no translator wrote as language is
removed: placeholders (`%s`, `{name}`), entities and accelerator marks (`_File`), and
line breaks. A translation that reads the same as its English source is left out
(untranslated, or a language-neutral name like "Angola"), so a record has the languages
that really translated it. The split is the ASR LM text's (by the message's source
text, one in ten held out), so the two never disagree on which messages are held out.

Languages: every locale whose catalogs give at least MIN_MESSAGES translated messages (92
on a Debian machine, from 6,067 for sr down to 1,002 for br, scripts from Latin to Tibetan),
named by their locale directory ("pt_BR", "sr@latin"). English comes first, then
CORE_LANGUAGES in their fixed order, so the class indices and `<2xx>` tags of the original
20 never move, then the rest by code. Counting reads every catalog (~7 s), so the counts
are cached under a fingerprint of the catalog files' names, sizes and mtimes, and
importing this module stays cheap.
"""

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import unicodedata
from typing import Iterator

from model_zoo.errors import ConfigError, MissingFileError
from tasks import cache
from tasks.asr_lm import catalogs, corpus as asr_corpus, normalize

LOCALE_DIR = pathlib.Path("/usr/share/locale")
# Debian packages: libglib2.0-data, libgtk2.0-common, iso-codes, xkb-data.
DOMAINS = (
    "glib20",
    "gtk20",
    "gtk20-properties",
    "xkeyboard-config",
    "iso_3166-1",
    "iso_639-2",
    "iso_4217",
    "iso_15924",
)
SOURCE_LANGUAGE = "en"
# The first 20 languages: every catalog above has them (a missing one is an error) and
# langid.py, Lingua and CLD2 all know them.
CORE_LANGUAGES = (
    "en", "de", "es", "fr", "it", "pt", "nl", "pl", "ru", "uk",
    "cs", "sv", "da", "fi", "hu", "tr", "el", "ro", "ca", "id",
)  # fmt: skip
# Translated messages (train and validation) a language needs to join the corpus: below
# ~1,000 a language has a few hundred country names and little else to learn from.
MIN_MESSAGES = 1000
SPLITS = asr_corpus.SPLITS
_INVISIBLE = ("Cc", "Cf")  # control and format characters (BOM, zero-width spaces)
VERSION = 3  # of the cleaning rules; part of the fingerprint, so a change rebuilds the caches


@dataclasses.dataclass(frozen=True)
class Record:
  """One message: a stable key, its domain, and its text in each language that has it."""

  key: str
  domain: str
  texts: dict[str, str]  # language -> written text; always has SOURCE_LANGUAGE


def clean(text: str) -> str:
  """NFKC text without placeholders, entities, accelerators or line breaks.

  NFKC is what SentencePiece applies before tokenizing ("…" -> "..."), and it drops
  invisible format characters (a stray U+FEFF in a German string), so a target's decoded
  tokens give back exactly the corpus text.
  """
  text = normalize.remove_ui_markup(unicodedata.normalize("NFKC", text))
  return " ".join("".join(c for c in text if unicodedata.category(c) not in _INVISIBLE).split())


def catalog_path(
    lang: str, domain: str, locale_dir: str | os.PathLike = LOCALE_DIR
) -> pathlib.Path:
  return pathlib.Path(locale_dir, lang, "LC_MESSAGES", f"{domain}.mo")


def is_translation(source: str, target: str) -> bool:
  """Whether a cleaned (English, translation) pair is kept: both say something, differently."""
  return bool(source and target and target != source)


def _catalog_stats(locale_dir: str | os.PathLike) -> str:
  """Every catalog file of DOMAINS under `locale_dir` with its size and mtime: a cheap key."""
  lines = [f"v{VERSION} {DOMAINS}"]
  for lang_dir in sorted(pathlib.Path(locale_dir).glob("*/LC_MESSAGES")):
    for domain in DOMAINS:
      path = lang_dir / f"{domain}.mo"
      if path.is_file():
        stat = path.stat()
        lines.append(f"{path.parent.parent.name}/{domain} {stat.st_size} {stat.st_mtime_ns}")
  return "\n".join(lines)


def _count_translations(lang: str, locale_dir: str | os.PathLike) -> int:
  """The messages of `lang` that `records()` keeps: its catalogs' translations, cleaned."""
  return sum(
      is_translation(clean(message.msgids[0]), clean(message.msgstrs[0]))
      for domain in DOMAINS
      if catalog_path(lang, domain, locale_dir).is_file()
      for message in catalogs.read_mo(catalog_path(lang, domain, locale_dir))
  )


@functools.cache
def message_counts(locale_dir: str | os.PathLike = LOCALE_DIR) -> dict[str, int]:
  """Locale -> its translated messages, for every locale with a catalog of DOMAINS but English.

  Read from the cache when the catalog files are unchanged (see the module doc).
  """
  stats = _catalog_stats(locale_dir)
  key = hashlib.sha256(f"{os.path.abspath(locale_dir)}\0{stats}".encode()).hexdigest()[:16]
  path = cache.cache_dir("parallel") / f"message_counts_{key}.json"
  if path.exists():
    return json.loads(path.read_text(encoding="utf-8"))
  locales = sorted({line.split("/")[0] for line in stats.splitlines()[1:]} - {SOURCE_LANGUAGE})
  counts = {lang: _count_translations(lang, locale_dir) for lang in locales}
  cache.atomic_write(path, json.dumps(counts, indent=0, sort_keys=True).encode("utf-8"))
  return counts


def languages(locale_dir: str | os.PathLike = LOCALE_DIR) -> tuple[str, ...]:
  """English, CORE_LANGUAGES, then every other locale with >= MIN_MESSAGES messages, by code.

  The core languages are always there (their catalogs are required: `records` names the
  packages when one is missing), so their indices never depend on this machine.
  """
  counts = message_counts(locale_dir)
  extra = sorted(
      lang for lang, n in counts.items() if n >= MIN_MESSAGES and lang not in CORE_LANGUAGES
  )
  return (*CORE_LANGUAGES, *extra)


LANGUAGES = languages()


def languages_with(min_messages: int) -> tuple[str, ...]:
  """English and the corpus languages with at least `min_messages` messages, in LANGUAGES order.

  `min_messages` must leave English at least one partner: MIN_MESSAGES up to the count of
  the best-translated language.
  """
  counts = message_counts()
  most = max(counts.get(lang, 0) for lang in LANGUAGES[1:])
  if not MIN_MESSAGES <= min_messages <= most:
    raise ConfigError(
        f"min_messages must be in [{MIN_MESSAGES}, {most}] (below {MIN_MESSAGES} a language is "
        f"not in the corpus; above {most} only English is left); got {min_messages}"
    )
  return tuple(
      lang for lang in LANGUAGES if lang == SOURCE_LANGUAGE or counts.get(lang, 0) >= min_messages
  )


def fingerprint(locale_dir: str | os.PathLike = LOCALE_DIR) -> str:
  """A hash of the language set and every catalog read: changes when the corpus would."""
  langs = languages(locale_dir)
  digest = hashlib.sha256(f"podzoo parallel corpus v{VERSION}\0{','.join(langs)}\0".encode())
  for lang in langs:
    for domain in DOMAINS:
      path = catalog_path(lang, domain, locale_dir)
      if path.is_file():
        digest.update(f"{lang}/{domain}\0".encode() + path.read_bytes())
  return digest.hexdigest()[:16]


def _read(lang: str, domain: str, locale_dir: str | os.PathLike) -> list[catalogs.Message]:
  """A catalog's messages; a missing one is an error for a core language, empty for others."""
  path = catalog_path(lang, domain, locale_dir)
  if not path.is_file():
    if lang not in CORE_LANGUAGES:
      return []
    raise MissingFileError(
        f"the parallel corpus needs the gettext catalog {str(path)!r}; install the Debian "
        "packages libglib2.0-data, libgtk2.0-common, xkb-data and iso-codes"
    )
  return catalogs.read_mo(path)


def _translations(
    locale_dir: str | os.PathLike,
) -> Iterator[tuple[str, str, catalogs.Message, str, str]]:
  """(domain, language, message, clean English, clean translation) of every catalog entry."""
  for domain in DOMAINS:
    for lang in languages(locale_dir)[1:]:
      for message in _read(lang, domain, locale_dir):
        yield domain, lang, message, clean(message.msgids[0]), clean(message.msgstrs[0])


def _split(message: catalogs.Message) -> str:
  return "validation" if asr_corpus.is_validation(message) else "train"


@functools.cache
def records(locale_dir: str | os.PathLike = LOCALE_DIR) -> dict[str, tuple[Record, ...]]:
  """Split name -> records sorted by key (messages with no translation left out)."""
  merged: dict[str, Record] = {}
  split_of: dict[str, str] = {}
  for domain, lang, message, source, target in _translations(locale_dir):
    if not is_translation(source, target):
      continue
    key = hashlib.sha256(
        f"{domain}\x04{message.context or ''}\x04{message.msgids[0]}".encode()
    ).hexdigest()[:16]
    record = merged.setdefault(key, Record(key, domain, {SOURCE_LANGUAGE: source}))
    record.texts[lang] = target
    split_of[key] = _split(message)
  by_split = {split: [] for split in SPLITS}
  for key in sorted(merged):
    by_split[split_of[key]].append(merged[key])
  return {split: tuple(rs) for split, rs in by_split.items()}


@functools.cache
def untranslated(
    lang: str, split: str, locale_dir: str | os.PathLike = LOCALE_DIR
) -> tuple[str, ...]:
  """The distinct texts that `lang`'s catalogs give as their own but that are the English.

  The corpus leaves them out; some are language-neutral names ("Angola"), many are English
  under another language's name: what LangID filtering exists to catch.
  """
  check_language(lang)
  return tuple(
      dict.fromkeys(
          target
          for _, other, message, source, target in _translations(locale_dir)
          if other == lang and target and target == source and _split(message) == split
      )
  )


def split_records(split: str) -> tuple[Record, ...]:
  """The records of `split` ("train" or "validation")."""
  if split not in SPLITS:
    raise ConfigError(f"the parallel corpus has splits {SPLITS}; got {split!r}")
  return records()[split]


def check_language(lang: str) -> None:
  if lang not in LANGUAGES:
    raise ConfigError(f"the parallel corpus has languages {LANGUAGES}; got {lang!r}")


def pairs(source: str, target: str, split: str) -> list[tuple[str, str]]:
  """(source text, target text) of every record of `split` that has both languages."""
  check_language(source)
  check_language(target)
  return [
      (r.texts[source], r.texts[target])
      for r in split_records(split)
      if source in r.texts and target in r.texts
  ]


def monolingual(lang: str, split: str) -> list[str]:
  """The distinct texts of `lang` in `split`, in key order of their first record."""
  check_language(lang)
  return list(dict.fromkeys(r.texts[lang] for r in split_records(split) if lang in r.texts))
