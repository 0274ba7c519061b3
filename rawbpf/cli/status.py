"""``rawbpf status``."""

from __future__ import annotations

import click

from rawbpf.errors import ConfigError


@click.command("status")
def status() -> None:
    """(being built)"""
    raise ConfigError("rawbpf status: not available in this build yet")
