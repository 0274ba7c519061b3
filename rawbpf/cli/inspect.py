"""``rawbpf inspect`` and ``rawbpf disasm``."""

from __future__ import annotations

import click

from rawbpf.errors import ConfigError


@click.command("inspect")
def inspect() -> None:
    """(being built)"""
    raise ConfigError("rawbpf inspect: not available in this build yet")


@click.command("disasm")
def disasm() -> None:
    """(being built)"""
    raise ConfigError("rawbpf disasm: not available in this build yet")
