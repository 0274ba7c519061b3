"""``rawbpf load``: parse the options, then hand the object to the library's run lifecycle
(:func:`rawbpf.run.load_and_run`, or :func:`rawbpf.monitor.run.run_monitor` for the Claude monitor).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence

import click

from rawbpf.cli.common import log_dir_option, pin_dir_option
from rawbpf.cli.monitor_options import maybe_run_monitor, monitor_options, parse_quietly
from rawbpf.errors import ConfigError
from rawbpf.logfile import DEFAULT_FLUSH_INTERVAL

__tier__ = "kernel"


def parse_assignments(items: Sequence[str]) -> Dict[str, str]:
    """``["NAME=VALUE", …]`` → dict; the value stays text and is parsed later per the variable's BTF type."""
    out: Dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"--set '{item}': expected NAME=VALUE")
        out[name] = value
    return out


@click.command("load")
@click.argument("obj", type=click.Path(dir_okay=False))
@click.option("--no-attach", is_flag=True, help="Load and pin, but attach nothing.")
@click.option("--set", "assignments", multiple=True, metavar="NAME=VALUE",
              help="Set a global (const volatile) variable before load; repeatable.")
@click.option("--kernel-core/--user-core", "kernel_core", default=None,
              help="Where CO-RE relocations are applied (default: the kernel when it can).")
@pin_dir_option
@log_dir_option
@click.option("--max-bytes", type=click.IntRange(min=1024), default=10_000_000, show_default=True,
              help="Start a new log file when the current one would pass this size.")
@click.option("--backups", type=click.IntRange(min=0), default=5, show_default=True,
              help="Older log files to keep.")
@click.option("--flush-interval", type=click.FloatRange(min=0), default=DEFAULT_FLUSH_INTERVAL,
              show_default=True,
              help="Most seconds a record waits in memory before it is written to the log (no writes while "
                   "nothing is pending; 0 writes at every drain).")
@click.option("--record-type", "record_types", multiple=True, metavar="[RING=]STRUCT",
              help="The struct of a ring's records (default: found by naming convention); repeatable.")
@click.option("--ship", "ship_urls", multiple=True, metavar="URL",
              help="Also run rawbpf ship --to URL on the log (repeatable; the URLs of rawbpf ship --to).")
@monitor_options
def load(obj: str, no_attach: bool, assignments: Sequence[str], kernel_core: Optional[bool], pin_dir: str,
         log_dir: str, max_bytes: int, backups: int, flush_interval: float, record_types: Sequence[str],
         ship_urls: Sequence[str], **monitor: Any) -> None:
    """Load OBJ, attach its programs, pin them under PIN_DIR/<object>, and run until SIGINT/SIGTERM.

    On exit every program is detached and every pin removed. For programs/claude_monitor.o this is the
    Claude monitor: it logs to LOG_DIR and takes the [claude_monitor] options. With --ship, rawbpf ship runs
    beside it as a child process and stops with it.
    """
    if not ship_urls:  # nothing to ship: the shipper's modules are not imported
        _load(obj, no_attach, assignments, kernel_core, pin_dir, log_dir, max_bytes, backups, flush_interval,
              record_types, monitor)
        return
    from rawbpf.ship.child import ship_beside

    with ship_beside(ship_urls, log_dir, echo=click.echo):
        _load(obj, no_attach, assignments, kernel_core, pin_dir, log_dir, max_bytes, backups, flush_interval,
              record_types, monitor)


def _load(obj: str, no_attach: bool, assignments: Sequence[str], kernel_core: Optional[bool], pin_dir: str,
          log_dir: str, max_bytes: int, backups: int, flush_interval: float, record_types: Sequence[str],
          monitor: Dict[str, Any]) -> None:
    spec = parse_quietly(obj)  # parsed once: whether it is the monitor, then the load (None: it reports why)
    if maybe_run_monitor(obj, monitor, parsed=spec, pin_root=pin_dir, log_dir=log_dir, attach=not no_attach,
                         constants=parse_assignments(assignments), kernel_core=kernel_core, echo=click.echo,
                         log_options={"max_bytes": max_bytes, "backups": backups,
                                      "flush_interval": flush_interval}):
        return
    from rawbpf.daemon import DaemonOptions, consumer, keep_stale_drops
    from rawbpf.logfile import probe
    from rawbpf.run import load_and_run

    types = {}
    for item in record_types:
        ring, _, struct_name = item.rpartition("=")
        types[ring] = struct_name
    options = DaemonOptions(log_dir=os.path.abspath(log_dir), max_bytes=max_bytes, backups=backups,
                            flush_interval=flush_interval, record_types=types,
                            header={"object_path": os.path.abspath(obj)})
    def before_attach(coll: Any) -> None:
        probe(options.log_dir)  # another log writer: refused before anything is written
        cons.open(coll)  # the readers exist before the first event

    with consumer(options, echo=click.echo) as cons:
        load_and_run(obj, pin_root=pin_dir, attach=not no_attach, constants=parse_assignments(assignments),
                     kernel_core=kernel_core, runner=cons, echo=click.echo,
                     on_stale_pins=keep_stale_drops(options), spec=spec, prepare=before_attach)
