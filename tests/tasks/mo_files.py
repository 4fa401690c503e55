"""Writes gettext .mo files, so tests can build a locale directory of their own."""

import pathlib
import struct

from tasks.asr_lm import catalogs


def write_mo(path: pathlib.Path, messages: list[catalogs.Message], order: str = "<") -> None:
  """A .mo file (GNU gettext's layout) holding a UTF-8 header and `messages`."""
  pairs = [(b"", b"Content-Type: text/plain; charset=UTF-8\n")]
  for m in messages:
    key = ("" if m.context is None else m.context + "\x04") + "\0".join(m.msgids)
    pairs.append((key.encode(), "\0".join(m.msgstrs).encode()))
  pairs.sort()
  n = len(pairs)
  tables, blob, at = [[], []], b"", 28 + 16 * n
  for i, column in ((0, [k for k, _ in pairs]), (1, [v for _, v in pairs])):
    for s in column:
      tables[i].append(struct.pack(order + "2I", len(s), at + len(blob)))
      blob += s + b"\0"
  header = struct.pack(order + "7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(header + b"".join(tables[0]) + b"".join(tables[1]) + blob)
