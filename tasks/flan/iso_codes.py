"""English language names and country codes from Debian's iso-codes tables.

The same package ships the ISO catalogs the parallel corpus translates, so a country name
in the corpus (in any of its languages) has its ISO 3166-1 code here.
"""

import functools
import json
import pathlib

from model_zoo.errors import ConfigError, MissingFileError
from tasks.parallel import corpus

ISO_CODES_DIR = pathlib.Path("/usr/share/iso-codes/json")
# Locale modifiers (the part after "@") the corpus' locales use; ISO has no table of them.
MODIFIER_NAMES = {"latin": "Latin", "ije": "Ijekavian", "valencia": "Valencian"}


def _table(standard: str) -> list[dict[str, str]]:
  path = ISO_CODES_DIR / f"iso_{standard}.json"
  if not path.is_file():
    raise MissingFileError(f"Flan tasks need {str(path)!r}; install the Debian package iso-codes")
  return json.loads(path.read_text(encoding="utf-8"))[standard]


def _short_name(iso_name: str) -> str:
  """ISO's name as a prompt says it: the first uninverted alternative, no qualifier.

  "Greek, Modern (1453-)" -> "Greek", "Catalan; Valencian" -> "Catalan",
  "Bokmål, Norwegian; Norwegian Bokmål" -> "Norwegian Bokmål".
  """
  alternatives = [name.strip() for name in iso_name.split(";")]
  name = next((a for a in alternatives if "," not in a), alternatives[0].split(",")[0])
  return name.split("(")[0].strip()


def _qualifier(lang: str, regions: dict[str, str]) -> str:
  """The bracketed part of `lang`'s name: its region's or modifier's name ("" for neither)."""
  base, _, modifier = lang.partition("@")
  region = base.partition("_")[2]
  if region and region not in regions:
    raise ConfigError(
        f"cannot name the corpus language {lang!r} in prompts: ISO 3166-1 has no region "
        f"{region!r}; update the iso-codes package"
    )
  if modifier and modifier not in MODIFIER_NAMES:
    raise ConfigError(
        f"cannot name the corpus language {lang!r} in prompts: no name for the locale "
        f"modifier @{modifier}; add it to tasks.flan.iso_codes.MODIFIER_NAMES"
    )
  return regions[region] if region else MODIFIER_NAMES[modifier] if modifier else ""


@functools.cache
def language_names() -> dict[str, str]:
  """Corpus language (a locale name) -> English name, distinct for every language.

  The language is ISO 639-2's (by its two- or three-letter code); a region or a locale
  modifier is added in brackets: "pt_BR" -> "Portuguese (Brazil)", "zh_TW" -> "Chinese
  (Taiwan)", "sr@latin" -> "Serbian (Latin)".
  """
  iso = {
      entry[field]: entry["name"]
      for entry in _table("639-2")
      for field in ("alpha_2", "alpha_3")
      if field in entry
  }
  regions = {e["alpha_2"]: e.get("common_name", e["name"]) for e in _table("3166-1")}
  names = {}
  for lang in corpus.LANGUAGES:
    code = lang.partition("@")[0].partition("_")[0]
    if code not in iso:
      raise ConfigError(
          f"cannot name the corpus language {lang!r} in prompts: ISO 639-2 "
          f"({ISO_CODES_DIR}) has no code {code!r}; update the iso-codes package"
      )
    qualifier = _qualifier(lang, regions)
    names[lang] = _short_name(iso[code]) + (f" ({qualifier})" if qualifier else "")
  if len(set(names.values())) < len(names):
    raise ConfigError(
        f"two corpus languages share an English name ({names}): a prompt could not tell them "
        "apart; give their modifier distinct names in tasks.flan.iso_codes.MODIFIER_NAMES"
    )
  return names


@functools.cache
def country_codes() -> dict[str, str]:
  """English country name (short, official or common, as the corpus writes it) -> alpha-2 code."""
  return {
      corpus.clean(entry[field]): entry["alpha_2"]
      for entry in _table("3166-1")
      for field in ("name", "official_name", "common_name")
      if field in entry
  }
