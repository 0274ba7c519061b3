"""``rawbpf load``: load an object, attach its programs, pin them, and hold them until SIGINT/SIGTERM.

The foreground step is a plain function, :func:`wait_for_signal`; :func:`load_and_run` takes any other
``runner(collection, stop_event)`` in its place (the ring-buffer daemon consumes events there), and
everything around it — load, attach, pin, and the cleanup on the way out — stays the same.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import click

from rawbpf.cli.common import log_dir_option, pin_dir_option
from rawbpf.errors import ConfigError
from rawbpf.logfile import DEFAULT_FLUSH_INTERVAL
from rawbpf.monitor.options import maybe_run_monitor, monitor_options
from rawbpf.owner import PinDirLock

Runner = Callable[[Any, threading.Event], None]

log = logging.getLogger("rawbpf")


@dataclass
class LoadResult:
    """What :func:`load_and_run` did, for callers and tests."""

    object: str
    pin_dir: str
    attached: List[str] = field(default_factory=list)
    pins: List[str] = field(default_factory=list)
    seconds_to_attached: float = 0.0


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


def wait_for_signal(coll: Any, stop: threading.Event) -> None:
    """The default foreground loop: nothing to do but wait until SIGINT/SIGTERM sets ``stop``."""
    while not stop.wait(0.5):
        pass


def _install_stop_handlers(stop: threading.Event) -> Dict[int, Any]:
    def handler(signum: int, frame: Any) -> None:
        stop.set()

    old: Dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        old[sig] = signal.signal(sig, handler)
    return old


def load_and_run(obj: str, *, pin_root: str, attach: bool = True,
                 constants: Optional[Dict[str, Any]] = None, kernel_core: Optional[bool] = None,
                 runner: Runner = wait_for_signal, echo: Callable[[str], None] = click.echo,
                 stop: Optional[threading.Event] = None,
                 prepare: Optional[Callable[[Any], None]] = None,
                 map_sizes: Optional[Dict[str, int]] = None) -> LoadResult:
    """Load ``obj``, attach (unless ``attach=False``), pin under ``pin_root/<object>``, run ``runner``
    until it returns (the default returns on SIGINT/SIGTERM), then detach and unpin everything.
    ``prepare(collection)`` runs after load and before attach (e.g. to fill maps the programs read);
    ``map_sizes`` overrides the max_entries of maps by name (e.g. a ring buffer's size in bytes)."""
    from rawbpf import bpffs
    from rawbpf.collection import Collection
    from rawbpf.elf import load_spec

    t0 = time.monotonic()
    spec = load_spec(obj)
    for name, size in (map_sizes or {}).items():
        if name not in spec.maps:
            raise ConfigError(f"object '{spec.name}': no map '{name}' to resize")
        spec.maps[name].max_entries = size
    for name in constants or {}:
        if name not in spec.variables:
            known = ", ".join(sorted(spec.variables)) or "none"
            raise ConfigError(f"--set {name}: object '{spec.name}' has no global variable '{name}' "
                              f"(known: {known})")
    if _under_default_bpffs(pin_root):
        bpffs.ensure_mounted("/sys/fs/bpf")
    existing = os.path.abspath(pin_root)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not bpffs.is_bpffs(existing):
        raise ConfigError(f"--pin-dir {pin_root}: {existing} is not on a bpffs mount (pins need one; "
                          "mount one with: mount -t bpf bpf DIR)")
    target = os.path.join(pin_root, spec.name)
    lock = PinDirLock(target, spec.name)
    owner = lock.acquire()  # refuses a live owner; removes the pins of a dead one
    result = LoadResult(object=spec.name, pin_dir=target)
    stop = stop or threading.Event()
    old = {}
    try:
        if owner.stale_pid is not None:
            log.warning("pin directory %s: removed %d stale pins of '%s' left by pid %d (no longer running)",
                        target, owner.stale_pins, spec.name, owner.stale_pid)
        if threading.current_thread() is threading.main_thread():
            old = _install_stop_handlers(stop)
        coll = Collection.load(spec, pin_dir=target, constants=constants, kernel_core=kernel_core)
        try:
            core = "kernel" if coll.kernel_core else "user space"
            echo(f"loaded {spec.name}: {len(coll.programs)} programs, {len(coll.maps)} maps"
                 + (f", CO-RE in {core}" if spec.core_relo_count() else ""))
            if prepare is not None:
                prepare(coll)
            if attach:
                coll.attach_all()
                for name in coll.links:
                    from rawbpf.cli.inspect import _attach_text

                    echo(f"attached {name} → {_attach_text(spec.programs[name])}")
                    result.attached.append(name)
            coll.pin(target)
            result.pins = coll.pins
            result.seconds_to_attached = time.monotonic() - t0
            not_attached = [n for n in coll.programs if n not in coll.links]
            echo(f"pinned {len(result.pins)} objects under {target}")
            if attach:
                echo(f"attached {len(result.attached)} programs in {result.seconds_to_attached:.3f} s"
                     + (f" (not auto-attachable: {', '.join(not_attached)})" if not_attached else "")
                     + "; Ctrl-C or SIGTERM to stop")
            else:
                echo(f"loaded without attaching in {result.seconds_to_attached:.3f} s; "
                     "Ctrl-C or SIGTERM to stop")
            runner(coll, stop)
        finally:
            coll.close(keep_pinned_maps=False)  # rawbpf load leaves nothing pinned behind
        echo(f"stopped: detached {len(result.attached)} programs, unpinned {len(result.pins)} objects")
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        lock.release()  # the owner record, the directories it made; then the lock
    return result


def _under_default_bpffs(path: str) -> bool:
    """Whether ``path`` lives under /sys/fs/bpf (mounted on demand; other roots must already be bpffs)."""
    norm = os.path.abspath(path)
    return norm == "/sys/fs/bpf" or norm.startswith("/sys/fs/bpf/")


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
@monitor_options
def load(obj: str, no_attach: bool, assignments: Sequence[str], kernel_core: Optional[bool], pin_dir: str,
         log_dir: str, max_bytes: int, backups: int, flush_interval: float, record_types: Sequence[str],
         **monitor: Any) -> None:
    """Load OBJ, attach its programs, pin them under PIN_DIR/<object>, and run until SIGINT/SIGTERM.

    On exit every program is detached and every pin removed. For programs/claude_monitor.o this is the
    Claude monitor: it logs to LOG_DIR and takes the [claude_monitor] options.
    """
    if maybe_run_monitor(obj, monitor, pin_root=pin_dir, log_dir=log_dir, attach=not no_attach,
                         constants=parse_assignments(assignments), kernel_core=kernel_core, echo=click.echo,
                         log_options={"max_bytes": max_bytes, "backups": backups,
                                      "flush_interval": flush_interval}):
        return
    from rawbpf.daemon import DaemonOptions, consumer

    types = {}
    for item in record_types:
        ring, _, struct_name = item.rpartition("=")
        types[ring] = struct_name
    options = DaemonOptions(log_dir=os.path.abspath(log_dir), max_bytes=max_bytes, backups=backups,
                            flush_interval=flush_interval, record_types=types,
                            header={"object_path": os.path.abspath(obj)})
    load_and_run(obj, pin_root=pin_dir, attach=not no_attach, constants=parse_assignments(assignments),
                 kernel_core=kernel_core, runner=consumer(options, echo=click.echo))
