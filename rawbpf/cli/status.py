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
    (PIN_DIR/claude_monitor unless the status file says otherwise). Then every destination of rawbpf ship
    with a cursor in LOG_DIR: connected or not, cursor, records behind, last error."""
    from rawbpf.errors import ConfigError
    from rawbpf.monitor.status import collect, format_text, lost_total
    from rawbpf.ship.status import collect as collect_ship
    from rawbpf.ship.status import format_text as format_ship

    ship = collect_ship(log_dir)
    try:
        data = collect(log_dir, default_pin_root=pin_dir)
        data["lost_total"] = lost_total(data.get("counters"))
    except ConfigError as err:
        if not ship:
            raise
        data = {"monitor_error": str(err)}  # only shipping to show
    data["ship"] = ship
    if as_json:
        click.echo(json.dumps(data, sort_keys=True))
        return
    text = format_text(data) if "monitor_error" not in data else str(data["monitor_error"])
    click.echo(text + ("\n" + format_ship(ship) if ship else ""))
