"""The log's record encoding: msgpack maps back to back, no framing; pure.

:mod:`rawbpf.logfile` writes and reads the files; decoders that hand the writer pre-encoded batches
(:mod:`rawbpf.records`) encode here, without depending on the file layer.
"""

from __future__ import annotations

from typing import Any, Dict, List

import msgpack

__tier__ = "pure"
__all__ = ["pack_records"]


def pack_records(records: List[Dict[str, Any]]) -> bytes:
    """The msgpack encoding of ``records`` back to back (one C call for the whole batch)."""
    data: bytes = msgpack.packb(records, use_bin_type=True)
    n = len(records)
    # strip the array header: fixarray / array16 / array32
    return data[1:] if n < 16 else data[3:] if n < 0x10000 else data[5:]
