"""Options shared by several subcommands (pure)."""

from __future__ import annotations

import datetime as _dt
import re
import time
from typing import Any, Callable, Optional

import click

from rawbpf.errors import ConfigError

__tier__ = "pure"

DEFAULT_LOG_DIR = "/var/log/rawbpf"
DEFAULT_PIN_DIR = "/sys/fs/bpf/rawbpf"

F = Callable[..., Any]
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def log_dir_option(f: F) -> F:
    return click.option("--log-dir", default=DEFAULT_LOG_DIR, show_default=True,
                        type=click.Path(file_okay=False), help="Directory of the msgpack log.")(f)


def pin_dir_option(f: F) -> F:
    return click.option("--pin-dir", default=DEFAULT_PIN_DIR, show_default=True,
                        type=click.Path(file_okay=False), help="bpffs directory for pinned objects.")(f)


def is_verbose() -> bool:
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        if ctx.obj and "verbose" in ctx.obj:
            return bool(ctx.obj["verbose"])
        ctx = ctx.parent
    return False


def parse_since(text: str, now: Optional[float] = None) -> int:
    """``--since`` → ns since the epoch. Accepts ``90s``/``10m``/``2h``/``1d`` ago, an ISO date or time
    (``2026-11-21``, ``2026-11-21T08:30``, ``08:30:15`` today, local time), or epoch seconds
    (``@1763700000``)."""
    now = time.time() if now is None else now
    t = text.strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", t)
    if m:
        return int((now - float(m.group(1)) * _UNITS[m.group(2)]) * 1e9)
    if t.startswith("@") and re.fullmatch(r"@\d+(\.\d+)?", t):
        return int(float(t[1:]) * 1e9)
    if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?", t):
        today = _dt.datetime.fromtimestamp(now).date().isoformat()
        t = f"{today}T{t}"
    try:
        when = _dt.datetime.fromisoformat(t.replace(" ", "T", 1))
    except ValueError:
        raise ConfigError(f"--since '{text}': expected e.g. 10m, 2h, 2026-11-21T08:30, 08:30 or @EPOCH") \
            from None
    return int(when.timestamp() * 1e9)
