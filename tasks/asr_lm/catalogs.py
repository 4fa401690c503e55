"""Reads gettext `.mo` catalogs: the parallel, multilingual text every Debian machine ships.

`gettext.GNUTranslations` only looks messages up; it cannot list them, and it drops plural
msgids, so the binary format (GNU gettext manual, "The Format of GNU MO Files") is read
here directly. The tests check that both readers agree on every message.
"""

import dataclasses
import os
import pathlib
import struct

from model_zoo.errors import UserError

_MAGIC = 0x950412DE
_CONTEXT_SEPARATOR = "\x04"


class CatalogError(UserError, ValueError):
  """An installed gettext catalog that cannot be read (damaged, or of another format)."""


@dataclasses.dataclass(frozen=True)
class Message:
  """One catalog entry: the English source forms and their translations."""

  context: str | None
  msgids: tuple[str, ...]  # (singular,) or (singular, plural)
  msgstrs: tuple[str, ...]  # one per plural form of the target language


def read_mo(path: str | os.PathLike) -> list[Message]:
  """The messages of the `.mo` file `path` (the header entry, msgid "", left out)."""
  data = pathlib.Path(path).read_bytes()
  try:
    return _messages(data, path)
  except (struct.error, UnicodeDecodeError) as e:  # a truncated or damaged file
    raise CatalogError(f"{str(path)!r} is not a readable gettext .mo file ({e})") from e


def _messages(data: bytes, path: str | os.PathLike) -> list[Message]:
  for order in ("<", ">"):
    magic, revision, count, ids_at, strs_at = struct.unpack_from(order + "5I", data)
    if magic == _MAGIC:
      break
  else:
    raise CatalogError(f"{str(path)!r} is not a gettext .mo file (bad magic number)")
  if revision >> 16 > 1:
    raise CatalogError(f"{str(path)!r}: unsupported .mo major revision {revision >> 16}")

  def raw(table: int, i: int) -> bytes:
    length, offset = struct.unpack_from(order + "2I", data, table + 8 * i)
    return data[offset : offset + length]

  pairs = [(raw(ids_at, i), raw(strs_at, i)) for i in range(count)]
  charset = _charset(dict(pairs).get(b"", b""))
  messages = []
  for key, value in pairs:
    if not key:
      continue
    context, separator, msgid = key.decode(charset).partition(_CONTEXT_SEPARATOR)
    if not separator:
      context, msgid = None, context
    messages.append(
        Message(context, tuple(msgid.split("\0")), tuple(value.decode(charset).split("\0")))
    )
  return messages


def _charset(header: bytes) -> str:
  """The charset named by the header's Content-Type line; ASCII without one, as gettext does."""
  for line in header.decode("ascii", "replace").splitlines():
    name, _, value = line.partition(":")
    if name.strip().lower() == "content-type" and "charset=" in value:
      return value.split("charset=")[1].split(";")[0].strip()
  return "ascii"
