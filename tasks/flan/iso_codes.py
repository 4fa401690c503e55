"""English language names and country codes from Debian's iso-codes tables.

The same package ships the ISO catalogs the parallel corpus translates, so a country name
in the corpus (in any of its languages) has its ISO 3166-1 code here.
"""

import functools
import json
import pathlib

from model_zoo.errors import MissingFileError
from tasks.parallel import corpus

ISO_CODES_DIR = pathlib.Path("/usr/share/iso-codes/json")


def _table(standard: str) -> list[dict[str, str]]:
  path = ISO_CODES_DIR / f"iso_{standard}.json"
  if not path.is_file():
    raise MissingFileError(f"Flan tasks need {str(path)!r}; install the Debian package iso-codes")
  return json.loads(path.read_text(encoding="utf-8"))[standard]


@functools.cache
def language_names() -> dict[str, str]:
  """Corpus language code -> English name: ISO 639-2's first name, without qualifiers.

  ISO writes "Greek, Modern (1453-)" and "Catalan; Valencian"; a prompt says "Greek".
  """
  names = {entry["alpha_2"]: entry["name"] for entry in _table("639-2") if "alpha_2" in entry}
  return {
      lang: names[lang].split(";")[0].split(",")[0].split("(")[0].strip()
      for lang in corpus.LANGUAGES
  }


@functools.cache
def country_codes() -> dict[str, str]:
  """English country name (short, official or common, as the corpus writes it) -> alpha-2 code."""
  return {
      corpus.clean(entry[field]): entry["alpha_2"]
      for entry in _table("3166-1")
      for field in ("name", "official_name", "common_name")
      if field in entry
  }
