"""The foreground run lifecycle behind ``rawbpf load``: load an object, attach its programs, pin them, run
until stopped, then detach and unpin everything; kernel.

The foreground step is a plain function, :func:`wait_for_signal`; :func:`load_and_run` takes any other
``runner(collection, stop_event)`` in its place (the ring-buffer daemon consumes events there, the Claude
monitor adds its status file), and everything around it — load, attach, pin, the pin directory's owner lock,
signals, and the cleanup on the way out — stays the same.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from rawbpf.describe import attach_text
from rawbpf.errors import ConfigError
from rawbpf.owner import PinDirLock
from rawbpf.signals import StopSignals

__tier__ = "kernel"

__all__ = ["LoadResult", "Runner", "load_and_run", "wait_for_signal"]

Runner = Callable[[Any, threading.Event], None]

log = logging.getLogger("rawbpf")


@dataclass
class LoadResult:
    """What :func:`load_and_run` did, for callers and tests."""

    object: str
    pin_dir: str
    attached: List[str] = field(default_factory=list)
    registered: List[str] = field(default_factory=list)  # struct_ops maps registered with the kernel
    pins: List[str] = field(default_factory=list)
    seconds_to_attached: float = 0.0


def wait_for_signal(coll: Any, stop: threading.Event) -> None:
    """The default foreground loop: nothing to do but wait until SIGINT/SIGTERM sets ``stop``."""
    while not stop.wait(0.5):
        pass


def _say(text: str) -> None:
    log.info("%s", text)


def load_and_run(obj: str, *, pin_root: str, attach: bool = True,
                 constants: Optional[Dict[str, Any]] = None, kernel_core: Optional[bool] = None,
                 runner: Runner = wait_for_signal, echo: Callable[[str], None] = _say,
                 stop: Optional[threading.Event] = None,
                 prepare: Optional[Callable[[Any], None]] = None,
                 choose: Optional[Callable[[Any], object]] = None,
                 map_sizes: Optional[Dict[str, int]] = None,
                 on_stale_pins: Optional[Callable[[Any, str, int], None]] = None,
                 name: Optional[str] = None, spec: Optional[Any] = None) -> LoadResult:
    """Load ``obj``, attach (unless ``attach=False``), pin under ``pin_root/<object>``, run ``runner``
    until it returns (the default returns on SIGINT/SIGTERM), then detach and unpin everything.

    ``choose(spec)`` runs before load and may turn off programs (``autoload``) this kernel cannot attach;
    ``prepare(collection)`` runs after load and before attach (e.g. to fill maps the programs read);
    ``map_sizes`` overrides the max_entries of maps by name (e.g. a ring buffer's size in bytes);
    ``spec``: ``obj`` already parsed (a :class:`rawbpf.spec.CollectionSpec` of its own, changed here), so a
    caller that looked inside it first does not parse it twice; ``on_stale_pins(spec, pin_dir, pid)`` sees
    a dead run's pins before they are removed; ``echo`` receives the progress lines (``rawbpf load``
    prints them; by default they go to the log at INFO).
    Signals are handled here for the whole run (:class:`rawbpf.signals.StopSignals`): SIGINT/SIGTERM set
    ``stop``, SIGHUP reaches whoever registered for it."""
    from rawbpf import bpffs
    from rawbpf.collection import Collection
    from rawbpf.elf import load_spec

    t0 = time.monotonic()
    if spec is None:
        spec = load_spec(obj, name)  # ``name``: the object's name whatever its file is called
    for name, size in (map_sizes or {}).items():
        if name not in spec.maps:
            raise ConfigError(f"no map '{name}' to resize").with_context(f"object '{spec.name}'")
        spec.maps[name].max_entries = size
    for name in constants or {}:
        if name not in spec.variables:
            known = ", ".join(sorted(spec.variables)) or "none"
            raise ConfigError(f"--set {name}: object '{spec.name}' has no global variable '{name}' "
                              f"(known: {known})")
    if choose is not None:
        choose(spec)
    if _under_default_bpffs(pin_root):
        bpffs.ensure_mounted("/sys/fs/bpf")
    existing = os.path.abspath(pin_root)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not bpffs.is_bpffs(existing):
        raise ConfigError(f"--pin-dir {pin_root}: {existing} is not on a bpffs mount (pins need one; "
                          "mount one with: mount -t bpf bpf DIR)")
    target = os.path.join(pin_root, spec.name)
    def inspect_stale(d: str, pid: int) -> None:
        _unregister_stale(spec, d, pid)
        if on_stale_pins is not None:
            on_stale_pins(spec, d, pid)

    lock = PinDirLock(target, spec.name, inspect_stale=inspect_stale)
    owner = lock.acquire()  # refuses a live owner; removes the pins of a dead one
    result = LoadResult(object=spec.name, pin_dir=target)
    try:
        if owner.stale_pid is not None:
            log.warning("pin directory %s: removed %d stale pins of '%s' left by pid %d (no longer running)",
                        target, owner.stale_pins, spec.name, owner.stale_pid)
        with StopSignals(stop) as signals:
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
                        echo(f"attached {name} → {attach_text(spec.programs[name])}")
                        result.attached.append(name)
                    for name, plan in coll.struct_ops_plans.items():
                        how = "through a BPF link" if plan.link else "by map update"
                        echo(f"registered struct_ops {name} (struct {plan.type_name}, {how})")
                        result.registered.append(name)
                coll.pin(target)
                result.pins = coll.pins
                result.seconds_to_attached = time.monotonic() - t0
                in_struct_ops = {s.program for p in coll.struct_ops_plans.values() for s in p.slots}
                not_attached = [n for n in coll.programs if n not in coll.links and n not in in_struct_ops]
                echo(f"pinned {len(result.pins)} objects under {target}")
                if attach:
                    echo(f"attached {len(result.attached)} programs in {result.seconds_to_attached:.3f} s"
                         + (f" (not auto-attachable: {', '.join(not_attached)})" if not_attached else "")
                         + "; Ctrl-C or SIGTERM to stop")
                else:
                    echo(f"loaded without attaching in {result.seconds_to_attached:.3f} s; "
                         "Ctrl-C or SIGTERM to stop")
                runner(coll, signals.stop)
            finally:
                coll.close(keep_pinned_maps=False)  # a foreground run leaves nothing pinned behind
        echo(f"stopped: detached {len(result.attached)} programs, "
             + (f"unregistered {len(result.registered)} struct_ops, " if result.registered else "")
             + f"unpinned {len(result.pins)} objects")
    finally:
        lock.release()  # the owner record, the directories it made; then the lock
    return result


def _unregister_stale(spec: Any, directory: str, pid: int) -> None:
    """A dead run's struct_ops stay registered: a ``.struct_ops`` map is held by the kernel, not by a file
    descriptor, and a ``.struct_ops.link`` map by its pinned link. Unregister each one still pinned in its
    directory before the stale pins are removed, at once: a link freed by removing its pin would end its
    registration only later, from a kernel work queue, and this run's own registration would find the
    name still taken."""
    from rawbpf.attach import Link
    from rawbpf.collection import pin_name
    from rawbpf.consts import MapType
    from rawbpf.errors import NotSupportedError, RawBPFError
    from rawbpf.maps import Map

    for m in spec.maps.values():
        if m.struct_ops is None:
            continue
        link = m.struct_ops.link
        path = os.path.join(directory, "links", pin_name(m.name)) if link else \
            os.path.join(directory, pin_name(m.name))
        if not os.path.exists(path):
            continue
        try:
            if link:
                with Link.from_pin(path) as pinned_link:
                    pinned_link.detach()  # BPF_LINK_DETACH: unregistered now (Linux 6.10+)
            else:
                with Map.from_pin(path) as pinned:
                    if not (pinned.type == MapType.STRUCT_OPS and pinned.delete(0)):
                        continue
            log.warning("unregistered struct_ops %s, left registered by pid %d (no longer running)",
                        m.name, pid)
        except NotSupportedError:
            pass  # an older kernel: removing the pin ends it, a moment later
        except RawBPFError as err:
            log.warning("struct_ops %s left by pid %d: cannot unregister it: %s", m.name, pid, err)


def _under_default_bpffs(path: str) -> bool:
    """Whether ``path`` lives under /sys/fs/bpf (mounted on demand; other roots must already be bpffs)."""
    norm = os.path.abspath(path)
    return norm == "/sys/fs/bpf" or norm.startswith("/sys/fs/bpf/")
