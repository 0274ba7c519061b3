"""``rawbpf status``: what the running Claude monitor is doing, from its status file and pinned objects."""

from __future__ import annotations

import json

import click

from rawbpf.cli.common import log_dir_option, pin_dir_option

__tier__ = "kernel"


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@log_dir_option
@pin_dir_option
def status(as_json: bool, log_dir: str, pin_dir: str) -> None:
    """Show the running monitor: programs (runs, average ns), event counters, drops, tracked processes, ring
    fill, log files and records written. Reads LOG_DIR/claude_monitor.status.json and the pins it names
    (PIN_DIR/claude_monitor unless the status file says otherwise)."""
    from rawbpf.monitor.status import collect, format_text, lost_total

    data = collect(log_dir, default_pin_root=pin_dir)
    data["lost_total"] = lost_total(data.get("counters"))
    if as_json:
        click.echo(json.dumps(data, sort_keys=True))
    else:
        click.echo(format_text(data))
