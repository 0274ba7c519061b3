"""Make text from files, logs and kernels safe to print on a terminal; pure, no syscalls.

Anything a traced process controls (argv, file names, task names) or a file declares (section, map and program
names in an object, strings in a log) can hold bytes a terminal obeys: ESC and CSI/OSC sequences that move the
cursor, retitle the window, rewrite earlier lines or answer back, BEL, backspace, carriage return. Every text
output path runs such strings through :func:`escape` first; the result holds no character a terminal acts on,
and reading it back is unambiguous because a backslash is itself escaped:

* C0 controls, DEL and C1 controls: ``\\t`` ``\\n`` ``\\r`` for the three common ones, ``\\xNN`` for the rest
  (ESC is ``\\x1b``, CSI ``\\x9b``);
* bytes that are not valid UTF-8 (bytes input, or the lone surrogates ``surrogateescape`` decoding leaves):
  ``\\xNN`` for each byte;
* characters that change how the rest of the line is shown without being visible themselves (bidirectional
  overrides and isolates, zero-width and other format characters, line/paragraph separators, private use):
  ``\\uNNNN``;
* a backslash: ``\\\\``.

Printable text, spaces and non-ASCII letters included, is returned unchanged (the common case costs one
``str.isprintable`` call). :func:`escape_json` is the counterpart for JSON output: the data stays exact (it
parses back to the same string), only the characters JSON itself leaves raw are written as ``\\uNNNN``.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Union

__tier__ = "pure"

__all__ = ["escape", "escape_json"]

_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\"}
# categories shown as \\uNNNN: controls (Cc), format (Cf), surrogates (Cs), private use (Co), and the
# line/paragraph separators (Zl, Zp); other separators (spaces) print as themselves
_HIDDEN = frozenset(("Cc", "Cf", "Cs", "Co", "Zl", "Zp"))
# in a JSON text (json.dumps has escaped C0, '"' and '\\' already): DEL, C1, separators, format characters
_JSON_RAW = re.compile("[\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff"
                       "\ufff9-\ufffb\ud800-\udfff]")


def _char(c: str, backslash: bool) -> str:
    if c == "\\" and not backslash:
        return c
    short = _SHORT.get(c)
    if short is not None:
        return short
    o = ord(c)
    if o < 0x20 or 0x7F <= o <= 0x9F:
        return f"\\x{o:02x}"
    if 0xDC80 <= o <= 0xDCFF:  # an undecodable byte kept by surrogateescape
        return f"\\x{o - 0xDC00:02x}"
    if c == " " or unicodedata.category(c) not in _HIDDEN:
        return c
    return f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}"


def escape(text: Union[str, bytes], *, backslash: bool = True) -> str:
    """``text`` with every character a terminal could act on, or that would hide the ones after it, written
    as a visible escape (see the module docstring). ``bytes`` are decoded as UTF-8, invalid bytes as
    ``\\xNN``.

    ``backslash=False`` leaves backslashes as they are, for text a reader does not need to decode exactly
    (C source lines, error messages): still safe, only no longer unambiguous.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = bytes(text).decode("utf-8", "surrogateescape")
    if text.isprintable() and (not backslash or "\\" not in text):
        return text
    return "".join([_char(c, backslash) for c in text])


def escape_json(json_text: str) -> str:
    """A JSON text (from ``json.dumps(..., ensure_ascii=False)``) with DEL, C1 controls, invisible format
    characters, line separators and lone surrogates written as ``\\uNNNN``: it parses back to exactly the same
    value, and printing it cannot drive the terminal."""
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", json_text)
