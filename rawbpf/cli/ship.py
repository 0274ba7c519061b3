"""``rawbpf ship``: follow the log and deliver every record to each ``--to`` destination, in the foreground.

Parses the URLs, runs :class:`rawbpf.ship.engine.Shipper` until SIGINT/SIGTERM (or, with ``--drain``, until
everything in the log is acknowledged), and prints what each destination got.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Sequence

import click

from rawbpf.cli.common import log_dir_option
from rawbpf.signals import StopSignals

__tier__ = "files"


@click.command("ship")
@click.option("--to", "urls", multiple=True, required=True, metavar="URL",
              help="A destination (repeatable): forward://HOST:PORT, forward+tls://, syslog+tcp://, "
                   "syslog+tls://, relp://, with ?option=value settings (see the README).")
@log_dir_option
@click.option("--drain", is_flag=True,
              help="Ship what the log holds now, wait for the acknowledgements, exit.")
@click.option("--grace", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Seconds to wait on exit for acknowledgements of records already sent.")
def ship(urls: Sequence[str], log_dir: str, drain: bool, grace: float) -> None:
    """Ship the log in LOG_DIR to every destination, at least once, resuming from each destination's
    cursor. Runs in the foreground until SIGINT/SIGTERM."""
    from rawbpf.ship.engine import Shipper
    from rawbpf.ship.url import parse_destination

    dests = [parse_destination(u) for u in urls]
    stop = threading.Event()
    shipper = Shipper(dests, os.path.abspath(log_dir), drain=drain, grace=grace, stop=stop)
    with StopSignals(stop):  # SIGINT/SIGTERM set stop
        click.echo(f"shipping {os.path.abspath(log_dir)} to {', '.join(d.url for d in dests)}"
                   + ("" if drain else "; Ctrl-C or SIGTERM to stop"))
        sys.stdout.flush()
        final = shipper.run()
    failed = False
    for url, st in final.items():
        c = st["counters"]
        seq = st["cursor"]["seq"]
        click.echo(f"{url}: acked {c['acked']}, resent {c['resent']}, unshipped {c['unshipped']}; "
                   f"cursor {'-' if seq is None else seq}"
                   + (f"; {st['fatal']}" if st.get("fatal") else ""))
        failed = failed or bool(st.get("fatal"))
    if failed:
        sys.exit(1)
