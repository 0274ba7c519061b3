"""Run the Claude monitor: fill the program's rule and endpoint maps, attach, seed from /proc, consume the
ring into the log with records shaped and redacted, keep the status file; touches the kernel.

``rawbpf load programs/claude_monitor.o`` lands here (see :func:`run_monitor`); the generic loader does the
load / attach / pin / cleanup, the generic daemon the ring → log loop. On SIGINT/SIGTERM: drain, flush,
detach, unpin, remove the status file.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional

from rawbpf.errors import ConfigError, NotSupportedError, RawBPFError
from rawbpf.logfile import boot_id, probe
from rawbpf.monitor import OBJECT_NAME
from rawbpf.monitor.cgroups import CgroupPaths
from rawbpf.monitor.config import MonitorConfig
from rawbpf.monitor.files import OPS
from rawbpf.monitor.redact import redact_argv
from rawbpf.monitor.seed import TICK_NS, SeedEntry, attribute, attribute_trees, find_trees, scan
from rawbpf.owner import process_start
from rawbpf.run import load_and_run

if TYPE_CHECKING:  # the record shaping and status modules are imported once attached, by the runner
    from rawbpf.monitor.shape_files import FileShaping

__tier__ = "kernel"

log = logging.getLogger("rawbpf")


def enum_value(btf: Any, enum: str, name: str) -> int:
    """The value of enumerator ``name`` of ``enum`` in the object's BTF."""
    t = btf.find(enum) if btf is not None else None
    for v in getattr(t, "values", ()) or ():
        if v.name == name:
            return int(v.value)
    raise RawBPFError(f"object '{OBJECT_NAME}': BTF has no enumerator {enum}.{name}")


def pack_struct(btf: Any, name: str, values: Dict[str, Any]) -> bytes:
    """The bytes of ``struct name`` with the given members set (others zero), laid out per BTF: integers,
    or bytes for a char array (cut to its size); ``a.b`` names member b of the struct member a."""
    t = btf.find(name) if btf is not None else None
    if t is None:
        raise RawBPFError(f"object '{OBJECT_NAME}': BTF has no struct {name}")
    buf = bytearray(btf.size_of(t.id))
    for field, value in values.items():
        off, cur = 0, t
        for part in field.split("."):
            members = {m.name: m for m in getattr(cur, "members", ()) or ()}
            m = members.get(part)
            if m is None:
                raise RawBPFError(f"object '{OBJECT_NAME}': struct {name} has no member {field}")
            off += m.bits_offset // 8
            cur = btf[btf.resolve(m.type)]
            size = btf.size_of(m.type)
        if isinstance(value, (bytes, bytearray)):
            buf[off : off + size] = bytes(value[: size - 1]).ljust(size, b"\0")
        else:
            buf[off : off + size] = int(value).to_bytes(size, "little")
    return bytes(buf)


def track(coll: Any, pid: int, *, start_ns: int, root_pid: int, depth: int = 0, flags: int = 0,
          replace: bool = True, root_start_ns: Optional[int] = None, attr: Optional[Any] = None) -> bool:
    """Make the program track process ``pid``: its ``tracked`` entry (with ``attr``, a seed Attribution, as
    the attribution its records and children inherit), then its byte in ``tracked_pids`` (the programs' fast
    pre-check). Returns False if the kernel tracked it already and ``replace`` is off."""
    from rawbpf.consts import BPF_ANY, BPF_NOEXIST

    btf = coll.spec.btf
    fields: Dict[str, Any] = {"start": start_ns, "root_pid": root_pid, "depth": depth, "flags": flags,
                              "root_start": start_ns if root_start_ns is None else root_start_ns}
    if attr is not None:
        fields["attr.origin"] = enum_value(btf, "origin", f"ORIGIN_{attr.origin.upper()}")
        fields["attr.session_id"] = (attr.session_id or "").encode()
        fields["attr.traceparent"] = (attr.traceparent or "").encode()
    value = pack_struct(btf, "proc_info", fields)
    try:
        coll.maps["tracked"].update(pid, value, BPF_ANY if replace else BPF_NOEXIST)
    except OSError as err:
        if err.errno != errno.EEXIST:  # the kernel tracks it already
            raise
        return False
    pid_bytes = coll.maps["tracked_pids"]
    mm = pid_bytes.mmap(writable=True)
    try:
        mm[pid] = 1  # one byte per pid, byte offset == pid
    finally:
        mm.close()
    return True


def skip_missing_syscalls(spec: Any, echo: Callable[[str], None]) -> List[str]:
    """Turn off the programs of syscall tracepoints this kernel does not have (e.g. ``fchmodat2`` before
    Linux 6.6): a syscall the kernel lacks cannot be made, so there is nothing to miss. Says so in one line.
    Returns the names of the programs turned off."""
    from rawbpf.attach import tracefs_root

    root = None
    off = []
    for name, prog in spec.programs.items():
        if not prog.autoload or not prog.section.startswith(("tp/syscalls/", "tracepoint/syscalls/")):
            continue
        if root is None:
            try:
                root = tracefs_root("tracepoints of syscalls")
            except (RawBPFError, OSError):
                return []  # no tracefs at all: attaching says so, naming the first tracepoint
        if not os.path.exists(os.path.join(root, "events", prog.attach_to, "id")):
            prog.autoload = False
            off.append(name)
    if off:
        gone = ", ".join(sorted(spec.programs[n].attach_to.split("/")[-1] for n in off))
        echo(f"this kernel has no tracepoint for {gone}: {len(off)} programs not loaded")
    return off


def prepare(coll: Any, cfg: MonitorConfig) -> None:
    """Fill the identification rules and endpoint CIDRs before the programs are attached."""
    rules = coll.maps["comm_rules"]
    for key, value in cfg.comm_rule_entries():
        rules.update(key, value)
    endpoints = coll.maps["endpoints"]
    for key, value in cfg.endpoint_entries():
        endpoints.update(key, value)
    if "watch_names" in coll.maps:
        names = coll.maps["watch_names"]
        for key, value in cfg.watch.map_entries():
            names.update(key, value)


def home_directory(uid: int) -> str:
    """The home directory of ``uid`` from the password database (KeyError when it has none)."""
    import pwd

    return pwd.getpwuid(uid).pw_dir


def file_shaping(cfg: MonitorConfig) -> FileShaping:
    """The file/dns/tls shaping state for ``cfg`` (watch globs, host and port endpoint rules)."""
    from rawbpf.monitor.shape_files import FileShaping

    return FileShaping(watch=cfg.watch, home=home_directory, host_rules=cfg.host_endpoints,
                       port_rules=cfg.port_rules())


def sweep_file_summaries(coll: Any, files: FileShaping, window_ns: int,
                         now_ns: Optional[int] = None) -> List[Dict[str, Any]]:
    """Take the quiet keys out of ``file_recent`` (older than the window) and return a record for each one's
    folded events that no later record reported. The map is read in batches (a few system calls for
    thousands of keys: a storm of distinct files fills it); each quiet key is then removed with one atomic
    lookup-and-delete, so an event the kernel folds meanwhile is never counted twice nor dropped from the
    counters."""
    import struct as _struct

    m = coll.maps.get("file_recent") if hasattr(coll.maps, "get") else None
    if m is None:
        return []
    now = time.monotonic_ns() if now_ns is None else now_ns
    try:
        pairs = m.lookup_batch(1024)
    except RawBPFError:  # a kernel without batch operations on hash maps: key by key
        pairs = [(k, v) for k in list(m.keys()) for v in (m.lookup(k),) if v is not None]
    quiet = [key for key, value in pairs if now - _struct.unpack_from("<Q", value)[0] >= window_ns]
    out: List[Dict[str, Any]] = []
    for key, value in zip(quiet, m.lookup_and_delete_each(quiet)):
        if value is None:
            continue
        _ts, pending = _struct.unpack_from("<QQ", value)
        tgid, op, ino, dev, gen = _struct.unpack_from("<IIQII", key)
        rec = files.remainder(tgid, OPS.get(op, str(op)), dev, ino, gen, pending, time.time_ns())
        if rec is not None:
            out.append(rec)
    return out


def seed(coll: Any, cfg: MonitorConfig, *, proc_root: str = "/proc",
         exclude: Iterable[int] = ()) -> List[SeedEntry]:
    """Track the Claude trees already running; returns the entries this call made.

    Call after attaching: a process forked after its parent was seeded is then tracked by the kernel. A second
    scan picks up children forked between the first scan and the map updates. Entries the kernel already
    made (a process that exec'd meanwhile) are kept: they carry the exact start time.
    """
    btf = coll.spec.btf
    flags = enum_value(btf, "proc_flags", "PI_SEEN_AT_START")
    flags |= enum_value(btf, "proc_flags", "PI_COARSE_START")
    skip = {os.getpid(), *exclude}
    done: Dict[int, SeedEntry] = {}

    seeded: List[SeedEntry] = []

    def insert(e: SeedEntry) -> None:
        if track(coll, e.proc.pid, start_ns=e.start_ns, root_pid=e.root_pid, depth=e.depth, flags=flags,
                 replace=False, root_start_ns=e.root_start_ns, attr=e.attr):
            seeded.append(e)  # (a process the kernel already tracks has its own exec record)
        done[e.proc.pid] = e

    trees = find_trees(cfg, scan(proc_root), exclude=skip)
    attribute_trees(trees)
    for e in trees:
        insert(e)
    if done:
        procs = scan(proc_root)
        changed = True
        while changed:
            changed = False
            for p in procs.values():
                parent = done.get(p.ppid)
                if parent is not None and p.pid not in done and p.pid not in skip:
                    e = SeedEntry(p, parent.root_pid, parent.depth + 1, None,
                                  root_start_ns=parent.root_start_ns)
                    e.attr = attribute(e, parent.attr)
                    insert(e)
                    changed = True
    return seeded


def _tty_dev(tty_nr: int) -> int:
    """/proc/PID/stat's tty_nr as the program encodes a terminal: (major << 20) | minor."""
    return ((tty_nr >> 8) & 0xFFF) << 20 | (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)


def seed_records(entries: Iterable[SeedEntry], *, redact: bool = True, boot: str = "",
                 proc_root: str = "/proc") -> List[Dict[str, Any]]:
    """One ``exec`` record flagged ``seen_at_start`` per seeded process (what /proc says about it), with the
    fields of a kernel exec record; a seeded root's session is filled in from its descendants' when known."""
    from rawbpf.monitor.seed import read_proc
    from rawbpf.monitor.shape import exec_id, tty_name

    entries = list(entries)
    now = time.time_ns()
    starts = {e.proc.pid: e.start_ns for e in entries}
    out = []
    for e in entries:
        p = e.proc
        if p.ppid not in starts:
            parent = read_proc(proc_root, p.ppid)
            starts[p.ppid] = parent.start_ticks * TICK_NS if parent else 0
        argv = redact_argv(p.argv)[0] if redact else list(p.argv)
        out.append({
            "type": "exec", "ts": now, "pid": p.pid, "tid": p.pid, "ppid": p.ppid, "uid": p.uid,
            "euid": p.euid, "root_pid": e.root_pid, "depth": e.depth, "comm": p.comm, "seen_at_start": True,
            "exec_id": exec_id(boot, p.pid, e.start_ns),
            "parent_exec_id": exec_id(boot, p.ppid, starts[p.ppid]),
            "root_exec_id": exec_id(boot, e.root_pid, e.root_start_ns or starts.get(e.root_pid, 0)),
            "auid": p.auid, "tty": tty_name(_tty_dev(p.tty_nr)), "cgroup": p.cgroup, "origin": e.attr.origin,
            "session_id": e.attr.session_id, "traceparent": e.attr.traceparent,
            "filename": p.exe, "argv": argv, "argv_truncated": False, "match": e.match,
            "cwd": p.cwd or "/", "cwd_truncated": False,
            "claude_env": [n for n in ("CLAUDE_CODE_SESSION_ID", "CLAUDECODE", "CLAUDE_PID",
                                       "CLAUDE_CODE_CHILD_SESSION", "TRACEPARENT", "CLAUDE_PROJECT_DIR")
                           if n in p.env],
            "claude_env_truncated": False,
            "claude_pid": int(p.env["CLAUDE_PID"]) if p.env.get("CLAUDE_PID", "").isdigit() else None,
        })
    return out


def boost_priority(boost: int) -> Optional[int]:
    """Lower the calling thread's nice value by ``boost`` (at most to -20), as auditd's ``priority_boost``
    does: the thread draining the ring is what keeps records from being lost when the host is busy. Returns
    the new nice value; None when ``boost`` is 0 or the kernel refused (not root: said once, not fatal)."""
    if boost <= 0:
        return None
    try:
        nice = os.getpriority(os.PRIO_PROCESS, 0)  # who=0: the calling thread on Linux
        os.setpriority(os.PRIO_PROCESS, 0, max(-20, nice - boost))
        return os.getpriority(os.PRIO_PROCESS, 0)
    except OSError as err:
        log.warning("priority boost %d: %s; records may be lost on a busy host", boost,
                    os.strerror(err.errno or 0).lower())
        return None


def check_log_dir(log_dir: str) -> bool:
    """Fail early, before anything is loaded, when the log directory cannot take this monitor's log (not
    writable, group/world-writable); True if created (0700). Another writer there is refused in
    :func:`prepare`, once the pin directory's lock has named a second monitor as such."""
    from rawbpf.logfile import check_dir_mode

    created = not os.path.isdir(log_dir)
    try:
        os.makedirs(log_dir, mode=0o700, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"log directory {log_dir}: {os.strerror(err.errno or 0).lower()}") from None
    if not os.access(log_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"log directory {log_dir}: not writable")
    check_dir_mode(log_dir)
    return created


def run_monitor(obj: str, cfg: MonitorConfig, *, pin_root: str, log_dir: str, attach: bool = True,
                constants: Optional[Dict[str, Any]] = None, kernel_core: Optional[bool] = None,
                echo: Callable[[str], None] = print, stop: Optional[threading.Event] = None,
                proc_root: str = "/proc", status_interval: float = 1.0, seed_from_proc: bool = True,
                log_options: Optional[Dict[str, Any]] = None, spec: Optional[Any] = None) -> Any:
    """Load and run the monitor in the foreground until SIGINT/SIGTERM (or ``stop``).

    ``spec``: ``obj`` already parsed under the monitor's name (not parsed again).
    ``log_options``: DaemonOptions fields for the log (max_bytes, backups, flush_interval). Returns the
    loader's LoadResult.
    """
    cfg.validate()
    log_dir = os.path.abspath(log_dir)
    created_log_dir = check_log_dir(log_dir)
    consts = dict(cfg.constants())
    consts.update(constants or {})
    summary = {
        "comms": list(cfg.comms), "interpreters": list(cfg.interpreters),
        "path_rules": [("basename:" if r.basename else "") + r.text for r in cfg.path_rules],
        "endpoints": cfg.endpoint_names(), "only_endpoints": cfg.only_endpoints,
        "argv_max_args": cfg.argv_max_args, "argv_max_bytes": cfg.argv_max_bytes,
        "ring_bytes": cfg.ring_bytes, "priority_boost": cfg.priority_boost,
        "watch_read": list(cfg.watch.globs),
        "file_summary_ms": cfg.file_summary_ns / 1e6,
    }
    started = time.time_ns()
    pid_start = process_start(os.getpid())  # with the pid: a reused pid cannot pass for this daemon
    from rawbpf.daemon import DaemonOptions, keep_stale_drops

    options = DaemonOptions(log_dir=log_dir, status_interval=status_interval, rings=["events"],
                            header={"monitor": summary, "object_path": os.path.abspath(obj)},
                            **(log_options or {}))

    def runner(coll: Any, stop_event: threading.Event) -> None:
        from rawbpf.daemon import Daemon
        from rawbpf.monitor.shape import Catalog, Shaper
        from rawbpf.monitor.shape_runs import RunShaper
        from rawbpf.monitor.status import remove_status, write_status
        from rawbpf.programs import enable_stats

        pin_dir = os.path.abspath(os.path.join(pin_root, coll.spec.name))
        try:
            stats: Optional[Any] = enable_stats()
        except (NotSupportedError, OSError) as err:
            log.warning("BPF run-time stats unavailable (status shows no run times): %s", err)
            stats = None
        state: Dict[str, Any] = {"seeded": 0}

        warned = [False]

        def on_status(d: Dict[str, Any]) -> None:
            if cfg.file_summary_ns:
                try:
                    daemon.writer.write_many(sweep_file_summaries(coll, fshape, cfg.file_summary_ns))
                except (OSError, RawBPFError) as err:
                    log.warning("file summary sweep failed: %s", err)
            try:
                _write(d)
                warned[0] = False
            except OSError as err:  # a full disk or a removed log dir must not stop the monitor
                if not warned[0]:
                    warned[0] = True
                    log.warning("status file in %s: cannot write it: %s", log_dir,
                                os.strerror(err.errno or 0).lower())

        def _write(d: Dict[str, Any]) -> None:
            files = sorted(f for f in os.listdir(log_dir) if f.endswith(".mlog"))
            write_status(log_dir, {
                "pid": os.getpid(), "pid_start": pid_start, "object": coll.spec.name,
                "object_path": os.path.abspath(obj),
                "pin_dir": pin_dir, "log_dir": log_dir, "started": started, "updated": time.time_ns(),
                "seeded": state["seeded"], "nice": state.get("nice"), "config": summary,
                "stats_enabled": stats is not None,
                "sessions": fshape.status(),
                "log": {"records": d.get("log_records", 0), "current": d.get("log_file", ""),
                        "files": files, "lost_kernel": d.get("lost_kernel", 0),
                        "lost_log": d.get("lost_log", 0), "seq": d.get("seq", 0)},
            })

        fshape = file_shaping(cfg)
        shaper = Shaper(Catalog.from_btf(coll.spec.btf), 0, boot_id=boot_id(), cgroup_path=CgroupPaths(),
                        files=fshape)
        options.transform, options.status = shaper, on_status
        options.run_transform = lambda decoder: RunShaper(shaper, decoder)
        try:
            daemon = Daemon(coll, options)
        except BaseException:
            if stats is not None:
                stats.close()
            raise
        try:
            if attach and seed_from_proc:
                entries = seed(coll, cfg, proc_root=proc_root)
                state["seeded"] = len(entries)
                daemon.writer.write_many(seed_records(entries, boot=boot_id(), proc_root=proc_root))
                if entries:
                    echo(f"seeded {len(entries)} running Claude processes and descendants from {proc_root}")
            state["nice"] = boost_priority(cfg.priority_boost)
            on_status(daemon.status())
            echo(f"logging to {log_dir}; status: rawbpf status --log-dir {log_dir}")
            daemon.run(stop=stop_event.is_set)
            try:  # what is still folded in the kernel: reported now, however recent
                daemon.writer.write_many(sweep_file_summaries(coll, fshape, 0))
            except (OSError, RawBPFError) as err:
                log.warning("file summary sweep failed: %s", err)
        finally:
            daemon.close()
            remove_status(log_dir, os.getpid())
            if stats is not None:
                stats.close()

    def before_attach(coll: Any) -> None:
        probe(log_dir)  # another writer there is refused before anything is attached
        prepare(coll, cfg)

    try:
        return load_and_run(obj, pin_root=pin_root, attach=attach, constants=consts, kernel_core=kernel_core,
                            runner=runner, echo=echo, stop=stop,
                            prepare=before_attach,
                            choose=lambda spec: skip_missing_syscalls(spec, echo),
                            map_sizes={"events": cfg.ring_bytes} if cfg.ring_bytes else None,
                            on_stale_pins=keep_stale_drops(options), name=OBJECT_NAME, spec=spec)
    except BaseException:
        if created_log_dir:
            try:
                os.rmdir(log_dir)  # only if nothing was written
            except OSError:
                pass
        raise
