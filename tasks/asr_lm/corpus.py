"""Per-language ASR LM text, in spoken form, built from the machine's gettext catalogs.

Source: the `.mo` catalogs of `DOMAINS` under /usr/share/locale (Debian packages
libglib2.0-data, libgtk2.0-common and iso-codes: GLib and GTK 2 messages, country and
language names), read when first needed; nothing is downloaded or shipped. English has no
catalog of its own: its text is the msgids (the English source strings) of the other
languages' catalogs.

Cleaning, per language: every string goes through `normalize.spoken_form`; strings that
come out empty are dropped, and so are translations that read the same as their English
msgid (`is_untranslated`: untranslated English under another language's name, or a
language-neutral code like "A4"); each distinct line is kept once.

Split: a message is held out for validation iff sha256 of its context and msgid falls in
one bucket of `VALIDATION_BUCKETS`, so the same source messages are held out in every
language and no language trains on a translation of a validation message. A line given
by both a train and a validation message is kept in validation only.
"""

import functools
import hashlib
import os
import pathlib
from typing import Iterator

from model_zoo.errors import ConfigError, MissingFileError
from tasks.asr_lm import catalogs, normalize

LOCALE_DIR = pathlib.Path("/usr/share/locale")
DOMAINS = ("glib20", "gtk20", "gtk20-properties", "iso_3166", "iso_639")
SOURCE_LANGUAGE = "en"
LANGUAGES = ("en", "de", "es", "fr", "it", "pl", "pt", "ru")
SPLITS = ("train", "validation")
VALIDATION_BUCKETS = 10  # 1 in 10 messages is validation


def is_untranslated(message: catalogs.Message, msgstr: str) -> bool:
  """Whether `msgstr`, read as English, says the same words as one of the message's msgids."""
  english = {normalize.spoken_form(msgid, SOURCE_LANGUAGE) for msgid in message.msgids}
  return normalize.spoken_form(msgstr, SOURCE_LANGUAGE) in english


def is_validation(message: catalogs.Message) -> bool:
  """The message's split, fixed by its source text alone (the same in every language)."""
  key = f"{message.context or ''}\x04{message.msgids[0]}".encode("utf-8")
  return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") % VALIDATION_BUCKETS == 0


def read_catalogs(lang: str, locale_dir: str | os.PathLike = LOCALE_DIR) -> list[catalogs.Message]:
  """The messages of every domain in `DOMAINS` translated into `lang`."""
  messages = []
  for domain in DOMAINS:
    path = pathlib.Path(locale_dir, lang, "LC_MESSAGES", f"{domain}.mo")
    if not path.is_file():
      raise MissingFileError(
          f"ASR LM text needs the gettext catalog {str(path)!r}; it is installed by the "
          "Debian packages libglib2.0-data, libgtk2.0-common and iso-codes"
      )
    messages.extend(catalogs.read_mo(path))
  return messages


def written_texts(
    lang: str, locale_dir: str | os.PathLike = LOCALE_DIR
) -> Iterator[tuple[catalogs.Message, str]]:
  """(message, string) pairs of `lang`, before normalisation, untranslated ones left out."""
  if lang == SOURCE_LANGUAGE:
    for other in LANGUAGES:
      if other != SOURCE_LANGUAGE:
        for message in read_catalogs(other, locale_dir):
          yield from ((message, msgid) for msgid in message.msgids)
    return
  for message in read_catalogs(lang, locale_dir):
    for msgstr in message.msgstrs:
      if not is_untranslated(message, msgstr):
        yield message, msgstr


@functools.cache
def splits(lang: str, locale_dir: str | os.PathLike = LOCALE_DIR) -> dict[str, tuple[str, ...]]:
  """Sorted distinct spoken-form lines of `lang` for each split in `SPLITS`."""
  lines = {split: set() for split in SPLITS}
  for message, text in written_texts(lang, locale_dir):
    spoken = normalize.spoken_form(text, lang)
    if spoken:
      lines["validation" if is_validation(message) else "train"].add(spoken)
  lines["train"] -= lines["validation"]
  return {split: tuple(sorted(lines[split])) for split in SPLITS}


def split_lines(lang: str, split: str) -> tuple[str, ...]:
  """The lines of `lang` in `split` ("train" or "validation")."""
  if lang not in LANGUAGES:
    raise ConfigError(f"ASR LM text has languages {LANGUAGES}; got {lang!r}")
  if split not in SPLITS:
    raise ConfigError(f"ASR LM text has splits {SPLITS}; got {split!r}")
  return splits(lang)[split]
