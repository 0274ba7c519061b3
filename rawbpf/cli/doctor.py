"""``rawbpf doctor``."""

from __future__ import annotations

import click

from rawbpf.errors import ConfigError


@click.command("doctor")
def doctor() -> None:
    """(being built)"""
    raise ConfigError("rawbpf doctor: not available in this build yet")
