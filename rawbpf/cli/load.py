"""``rawbpf load``."""

from __future__ import annotations

import click

from rawbpf.errors import ConfigError


@click.command("load")
def load() -> None:
    """(being built)"""
    raise ConfigError("rawbpf load: not available in this build yet")
