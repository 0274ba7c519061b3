"""``rawbpf status``: what the running Claude monitor is doing, from its status file and pinned objects."""

from __future__ import annotations

import json

import click

from rawbpf.cli.common import DEFAULT_LOG_DIR, DEFAULT_PIN_DIR

__tier__ = "kernel"


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
# readable=False: a user who may not read them gets a one-line "permission denied", not a usage error
@click.option("--log-dir", default=DEFAULT_LOG_DIR, show_default=True,
              type=click.Path(file_okay=False, readable=False),
              help="Directory of the msgpack log (default: found from the running monitor's pins).")
@click.option("--pin-dir", default=DEFAULT_PIN_DIR, show_default=True,
              type=click.Path(file_okay=False, readable=False), help="bpffs directory for pinned objects.")
def status(as_json: bool, log_dir: str, pin_dir: str) -> None:
    """Show the running monitor: programs (runs, average ns), event counters, drops, tracked processes, ring
    fill, log files and records written. Without --log-dir, finds the monitor that owns PIN_DIR/claude_monitor
    (its owner record) and its log directory; reads LOG_DIR/claude_monitor.status.json and the pins it names.
    Counters, run times, tracked processes and the ring are read live; records written is the daemon's
    figure, with its age. Then every destination of rawbpf ship with a cursor in LOG_DIR: connected or not,
    cursor, records behind, last error."""
    from rawbpf.errors import ConfigError
    from rawbpf.monitor.status import collect, find_log_dir, format_text, lost_total
    from rawbpf.ship.status import collect as collect_ship
    from rawbpf.ship.status import format_text as format_ship

    if click.get_current_context().get_parameter_source("log_dir") == click.core.ParameterSource.DEFAULT:
        log_dir = find_log_dir(pin_dir) or log_dir

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
    err_text = str(data.get("monitor_error", ""))
    text = format_text(data) if not err_text else "monitor: " + err_text.removeprefix("status: ")
    click.echo(text + ("\n" + format_ship(ship) if ship else ""))
