"""``rawbpf doctor``: can this machine run rawbpf? The checks are :mod:`rawbpf.doctor`'s; this prints them as
a table or JSON.

Exit status 1 when something rawbpf needs is missing; optional features only warn.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import List

import click

from rawbpf.doctor import MISSING, WARN, Check, run_checks

__tier__ = "kernel"


def format_table(checks: List[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{'STATUS':8} {'CHECK':{width}}  DETAIL"]
    for c in checks:
        mark = c.status.upper() if c.status in (MISSING, WARN) else c.status
        lines.append(f"{mark:8} {c.name:{width}}  {c.detail}")
    bad = [c.name for c in checks if c.required and c.status == MISSING]
    lines.append("")
    lines.append(f"rawbpf cannot run here: missing {', '.join(bad)}" if bad else "rawbpf can run here")
    return "\n".join(lines)


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as one JSON object.")
@click.option("--mount", "mount_all", is_flag=True,
              help="Mount whatever of bpffs and tracefs is missing (root).")
@click.option("--mount-bpffs", is_flag=True, help="Mount bpffs at /sys/fs/bpf if it is missing (root).")
@click.option("--mount-tracefs", is_flag=True,
              help="Mount tracefs at /sys/kernel/tracing (or debugfs) if it is missing (root).")
def doctor(as_json: bool, mount_all: bool, mount_bpffs: bool, mount_tracefs: bool) -> None:
    """Check privileges, kernel, bpffs, tracefs, BTF and every BPF feature rawbpf uses."""
    checks = run_checks(mount_bpffs or mount_all, mount_tracefs or mount_all)
    ok = not any(c.required and c.status == MISSING for c in checks)
    if as_json:
        click.echo(json.dumps({"ok": ok, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        click.echo(format_table(checks))
    if not ok:
        raise SystemExit(1)
