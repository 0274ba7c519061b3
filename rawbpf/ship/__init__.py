"""Shipping the log to the log pipelines a team already runs: Fluent Forward, syslog (RFC 5424) and RELP.

The log on disk is the durable buffer. Each destination follows it with its own reader and its own cursor
(the seq of the last acknowledged record, written atomically next to the log), so a restart resumes after
the last acknowledgement, a slow destination never stalls another, and records rotated away before they
were shipped are counted and announced downstream as a ``lost`` record (``reason: "unshipped"``).

Modules: :mod:`.url` (destination URLs, pure), :mod:`.forward`, :mod:`.syslog`, :mod:`.relp` (protocol
encoding and decoding, pure), :mod:`.cursor` (cursor files), :mod:`.conn` (sockets and TLS),
:mod:`.engine` (one worker per destination), :mod:`.status` (the status file ``rawbpf status`` reads).
"""

from __future__ import annotations

__tier__ = "pure"

__all__ = ["engine", "url"]
