"""``rawbpf tail``."""

from __future__ import annotations

import click

from rawbpf.errors import ConfigError


@click.command("tail")
def tail() -> None:
    """(being built)"""
    raise ConfigError("rawbpf tail: not available in this build yet")
