"""Options shared by several subcommands (pure)."""

from __future__ import annotations

from typing import Any, Callable

import click

__tier__ = "pure"

DEFAULT_LOG_DIR = "/var/log/rawbpf"
DEFAULT_PIN_DIR = "/sys/fs/bpf/rawbpf"

F = Callable[..., Any]


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
