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

__all__ = ["SD_ID", "SD_FIELDS", "Formatter", "format_message", "frame", "to_json"]

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
    if type(v) is int:
        return str(v)
    if isinstance(v, bytes):
        v = v.hex()
    s = v if isinstance(v, str) else str(v)
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
        if type(ts_ns) is not int or ts_ns <= 0:
            return "-"
        sec, ns = divmod(ts_ns, 1_000_000_000)
        if sec != self._sec:
            self._sec = sec
            self._text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{self._text}.{ns // 1000:06d}Z"


class Formatter:
    """Formats records for one destination (the header fields that do not change are built once)."""

    def __init__(self, *, hostname: str, app_name: str = "rawbpf", facility: int = 16) -> None:
        tail = f" {_field(hostname, 255)} {_field(app_name, 48)} - "
        self._info = f"<{facility * 8 + SEV_INFO}>1 "
        self._warning = f"<{facility * 8 + SEV_WARNING}>1 "
        self._tail = tail
        self._msgid: Dict[Any, str] = {}
        self._clock = _Clock()

    def _msgid_of(self, rtype: Any) -> str:
        m = self._msgid.get(rtype) if isinstance(rtype, str) else None
        if m is None:
            m = _field(str(rtype or "-"), 32)
            if isinstance(rtype, str) and len(self._msgid) < 1024:
                self._msgid[rtype] = m
        return m

    def format(self, record: Record, msg: Optional[str] = None) -> bytes:
        """One RFC 5424 message (without framing) for ``record``."""
        rtype = record.get("type")
        params = []
        for k in SD_FIELDS:
            v = record.get(k)
            if v is not None:
                params.append(f'{k}="{_sd_value(v)}"')
        body = _dumps(record) if msg is None else msg
        sd = f"[{SD_ID} {' '.join(params)}] " if params else "- "
        return (f"{self._warning if rtype == 'lost' else self._info}{self._clock.stamp(record.get('ts'))}"
                f"{self._tail}{self._msgid_of(rtype)} {sd}{body}").encode("utf-8", "replace")


def format_message(record: Record, *, hostname: str, app_name: str = "rawbpf", facility: int = 16,
                   msg: Optional[str] = None) -> bytes:
    """One RFC 5424 message (without framing) for ``record``."""
    return Formatter(hostname=hostname, app_name=app_name, facility=facility).format(record, msg)


def frame(message: bytes) -> bytes:
    """RFC 6587 octet counting: ``LEN SP MESSAGE``."""
    return b"%d %s" % (len(message), message)
