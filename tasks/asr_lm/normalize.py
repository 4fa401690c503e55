"""Written text to spoken form: what an ASR system hears, hence what its LM must model.

An ASR model emits lowercase words with no punctuation or digits, so an LM used for
shallow fusion has to be trained on text in that form. `spoken_form` is pure Python
(num2words does the number words), so it can run inside or outside a SeqIO pipeline.

Decisions, in the order applied:
1. NFKC: full-width and superscript digits become ASCII, ligatures split, "º" -> "o".
2. UI markup is removed (`remove_ui_markup`): printf/strftime (`%s`, `%1$s`, `%.1f`,
   `%H`), Qt (`%1`) and brace (`{name}`, `{}`) placeholders, XML entities (`&amp;`),
   and the keyboard accelerator marks `_File` / `&File`.
3. Numbers become words in the language: integers (with the language's thousands mark,
   if unambiguous), decimals (with its decimal mark; otherwise the mark is punctuation
   and both sides are read as integers), and the suffix ordinals in `NUMBER_STYLES`
   ("3rd", "2e", "1º"). German "3." style ordinals are left as cardinals: a full stop
   cannot be told from the end of a sentence. Integers over 18 digits are read digit by
   digit (num2words overflows on some languages there).
4. `str.lower()`, which is right for every language in `NUMBER_STYLES` (no Turkish i).
5. Only letters stay; an apostrophe stays only between two letters ("l'homme", "don't"),
   as the languages here write elisions. Combining marks are dropped: after NFKC every
   letter of these languages is one code point, so what is left is Russian stress marks
   ("респу́блика") or a spacing accent that NFKC split off ("Gwich´in"). Every other
   character, hyphens included ("e-mail" -> "e mail"), becomes a space.
6. Whitespace collapses to single spaces. The result is a fixed point: normalising it
   again changes nothing.
"""

import dataclasses
import functools
import re
import unicodedata

import num2words

from model_zoo.errors import ConfigError

_MAX_CARDINAL_DIGITS = 18
_MAX_DECIMAL_DIGITS = 15  # what a float holds exactly; num2words reads decimals from floats
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u02bc": "'", "\u2018": "'"})

_UI_MARKUP = re.compile(
    r"%(?:\d+\$)?[-+#0']*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|ll|[hlLqjzt])?[A-Za-z%]"  # printf
    r"|%\d+"  # Qt's positional %1
    r"|\{[^{}\s]*\}"  # Python/ICU brace fields
    r"|&#?\w+;"  # XML entities
)
_ACCELERATOR = re.compile(r"[_&](?=[^\W\d_])")
_STRAY_APOSTROPHE = re.compile(r"(?<![^\W\d_])'|'(?![^\W\d_])")


@dataclasses.dataclass(frozen=True)
class NumberStyle:
  """How a language writes numbers."""

  decimal_mark: str
  group_mark: str | None = None  # None where it would be ambiguous (a space)
  ordinal_suffixes: tuple[str, ...] = ()


NUMBER_STYLES = {
    "en": NumberStyle(".", ",", ("st", "nd", "rd", "th")),
    "de": NumberStyle(",", "."),
    "es": NumberStyle(",", ".", ("o",)),
    "fr": NumberStyle(",", None, ("ème", "er", "re", "e")),
    "it": NumberStyle(",", ".", ("o",)),
    "pl": NumberStyle(","),
    "pt": NumberStyle(",", ".", ("o",)),
    "ru": NumberStyle(","),
}


def remove_ui_markup(text: str) -> str:
  """`text` without placeholders, entities and accelerator marks, which nobody says aloud."""
  return _ACCELERATOR.sub("", _UI_MARKUP.sub(" ", text))


def spoken_form(text: str, lang: str) -> str:
  """`text` as words of language `lang`: lowercase, numbers spelt out, no punctuation."""
  if lang not in NUMBER_STYLES:
    raise ConfigError(f"spoken_form: language {lang!r} is not one of {sorted(NUMBER_STYLES)}")
  text = remove_ui_markup(unicodedata.normalize("NFKC", text))
  text = _number_pattern(lang).sub(functools.partial(_say_number, lang=lang), text)
  text = text.lower().translate(_APOSTROPHES)
  text = "".join(_keep(c) for c in text)
  return " ".join(_STRAY_APOSTROPHE.sub(" ", text).split())


@functools.cache
def _number_pattern(lang: str) -> re.Pattern[str]:
  style = NUMBER_STYLES[lang]
  grouped = (
      rf"\d{{1,3}}(?:{re.escape(style.group_mark)}\d{{3}})+(?!\d)|" if style.group_mark else ""
  )
  tail = [rf"{re.escape(style.decimal_mark)}(?P<fraction>\d+)"]
  if style.ordinal_suffixes:
    tail.append(rf"(?P<ordinal>{'|'.join(style.ordinal_suffixes)})(?!\w)")
  return re.compile(rf"(?P<integer>{grouped}\d+)(?:{'|'.join(tail)})?")


def _say_number(match: re.Match[str], lang: str) -> str:
  integer = re.sub(r"\D", "", match["integer"])
  if match.groupdict().get("ordinal"):
    words = num2words.num2words(int(integer), lang=lang, to="ordinal")
  elif match["fraction"] and len(integer) + len(match["fraction"]) <= _MAX_DECIMAL_DIGITS:
    words = num2words.num2words(float(f"{int(integer)}.{match['fraction']}"), lang=lang)
  elif match["fraction"]:
    words = f"{_cardinal(integer, lang)} {_cardinal(match['fraction'], lang)}"
  else:
    words = _cardinal(integer, lang)
  return f" {words} "


def _keep(char: str) -> str:
  """Letters and apostrophes stay, combining marks go, anything else separates words."""
  category = unicodedata.category(char)[0]
  if char == "'" or category == "L":
    return char
  return "" if category == "M" else " "


def _cardinal(digits: str, lang: str) -> str:
  if len(digits) > _MAX_CARDINAL_DIGITS:
    return " ".join(num2words.num2words(int(d), lang=lang) for d in digits)
  return num2words.num2words(int(digits), lang=lang)
