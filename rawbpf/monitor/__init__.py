"""The Claude Code monitor built on programs/claude_monitor.o: configuration, /proc seeding, record shaping,
secret redaction, the status file and the daemon glue.

Pure modules (``config``, ``redact``, ``shape``) make no syscalls (the ``rawbpf load`` options that build a
:class:`~rawbpf.monitor.config.MonitorConfig` live in :mod:`rawbpf.cli.monitor_options`); ``seed`` reads
/proc; ``status`` writes the status file and reads the pinned objects; ``run`` loads
the program into the kernel.
"""

from __future__ import annotations

__tier__ = "pure"

#: the object's name as the loader reports it; ``rawbpf load`` hands such objects to :mod:`rawbpf.monitor.run`
OBJECT_NAME = "claude_monitor"
