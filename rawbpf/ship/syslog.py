"""Records as RFC 5424 syslog messages, framed by RFC 6587 octet counting; pure (no syscalls).

One record is one message::

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID [rawbpf@32473 seq="…" type="…" pid="…" …] {"seq":…}

* PRI: the destination's facility (default local0) with severity *info*, *warning* for ``lost`` records.
* TIMESTAMP: the record's ``ts`` in UTC with microseconds; HOSTNAME: the shipping host; MSGID: the type.
* Structured data ``rawbpf@32473`` carries the key identity fields the record has (:data:`SD_FIELDS`), so a
  syslog server can filter on them without parsing the message.
* MSG: the whole record as compact JSON (UTF-8, no BOM; byte strings as hex, as ``rawbpf tail --json``).

Octet counting (``LEN SP MSG``) lets a message hold any byte, newlines included.
"""

from __future__ import annotations

import json
import time
from typing import Any, Dict, Optional

__tier__ = "pure"

__all__ = ["SD_ID", "SD_FIELDS", "format_message", "frame", "to_json"]

Record = Dict[str, Any]

#: the structured-data element's id (32473 is the private enterprise number reserved for examples,
#: RFC 5612: rawbpf has none of its own)
SD_ID = "rawbpf@32473"
#: record fields copied into structured data, in this order, when present
SD_FIELDS = ("seq", "type", "pid", "tid", "ppid", "uid", "comm", "root_pid", "session_id", "tool_use_id",
             "tool", "count", "reason", "first_seq", "last_seq")
SEV_INFO = 6
SEV_WARNING = 4


def _hex(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    raise TypeError(f"{type(v).__name__} is not JSON serializable")


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_hex).encode


def to_json(record: Record) -> str:
    """The record as one line of compact JSON (byte strings as hex)."""
    return _dumps(record)


def _sd_value(v: Any) -> str:
    if isinstance(v, bytes):
        v = v.hex()
    s = str(v)
    if '"' in s or "\\" in s or "]" in s:
        s = s.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")
    return s


def _field(text: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most ``limit`` characters, ``-`` when empty."""
    out = "".join(c if "!" <= c <= "~" else "_" for c in text[:limit])
    return out or "-"


class _Clock:
    """RFC 3339 timestamps, the seconds part formatted once per second."""

    def __init__(self) -> None:
        self._sec = -1
        self._text = ""

    def stamp(self, ts_ns: Any) -> str:
        if not isinstance(ts_ns, int) or ts_ns <= 0:
            return "-"
        sec, ns = divmod(ts_ns, 1_000_000_000)
        if sec != self._sec:
            self._sec = sec
            self._text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{self._text}.{ns // 1000:06d}Z"


_clock = _Clock()


def format_message(record: Record, *, hostname: str, app_name: str = "rawbpf", facility: int = 16,
                   msg: Optional[str] = None) -> bytes:
    """One RFC 5424 message (without framing) for ``record``."""
    rtype = record.get("type")
    severity = SEV_WARNING if rtype == "lost" else SEV_INFO
    sd = " ".join(f'{k}="{_sd_value(record[k])}"' for k in SD_FIELDS if record.get(k) is not None)
    body = to_json(record) if msg is None else msg
    head = (f"<{facility * 8 + severity}>1 {_clock.stamp(record.get('ts'))} {_field(hostname, 255)} "
            f"{_field(app_name, 48)} - {_field(str(rtype or '-'), 32)} ")
    return (head + (f"[{SD_ID} {sd}] " if sd else "- ") + body).encode("utf-8", "replace")


def frame(message: bytes) -> bytes:
    """RFC 6587 octet counting: ``LEN SP MESSAGE``."""
    return b"%d %s" % (len(message), message)
