"""The Claude Code monitor built on programs/claude_monitor.o: configuration, /proc seeding, record shaping,
secret redaction, the status file and the daemon glue.

Pure modules (``config``, ``redact``, ``shape``) make no syscalls (the ``rawbpf load`` options that build a
:class:`~rawbpf.monitor.config.MonitorConfig` live in :mod:`rawbpf.cli.monitor_options`); ``seed`` reads
/proc; ``status`` writes the status file and reads the pinned objects; ``run`` loads
the program into the kernel.
"""

from __future__ import annotations

from typing import Any

__tier__ = "pure"

#: the name the monitor runs under (pins, log header, status file), whatever its file is called
OBJECT_NAME = "claude_monitor"

#: what the user-space glue fills and reads: an object with all of these is the monitor, by its content
MONITOR_MAPS = ("events", "tracked", "tracked_pids", "comm_rules", "endpoints", "counters")
MONITOR_TYPES = ("rec_type", "proc_flags", "proc_info", "counters", "record_types")


def is_monitor(spec: Any) -> bool:
    """Whether a parsed object (a :class:`rawbpf.spec.CollectionSpec`) is the Claude monitor: it has the
    monitor's maps and the BTF types its rules, seeding, shaping and status use. A renamed or versioned copy
    of claude_monitor.o is the monitor; an object merely named so is not."""
    btf = getattr(spec, "btf", None)
    if btf is None or not all(m in spec.maps for m in MONITOR_MAPS):
        return False
    return all(btf.find(t) is not None for t in MONITOR_TYPES)
