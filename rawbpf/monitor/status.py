"""The monitor's live status: the status file the daemon keeps in its log directory, and what
``rawbpf status`` reads from the pinned programs and maps. Touches files, and the kernel through pinned
objects.

bpffs holds only BPF objects, so the file lives next to the log (``<log-dir>/claude_monitor.status.json``,
replaced atomically about once a second). It says where the pins are and what only the daemon knows (records
written, seeding); the counters, run times, tracked processes and ring fill are read live from the pins.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any, Dict, List, Optional

from rawbpf.errors import ConfigError, RawBPFError
from rawbpf.termsafe import escape

__tier__ = "kernel"

STATUS_NAME = "claude_monitor.status.json"


def status_path(log_dir: str) -> str:
    return os.path.join(log_dir, STATUS_NAME)


def write_status(log_dir: str, data: Dict[str, Any]) -> None:
    """Replace the status file atomically (readers never see a half-written file)."""
    fd, tmp = tempfile.mkstemp(prefix=".status-", dir=log_dir)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, status_path(log_dir))
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def remove_status(log_dir: str, owner_pid: int) -> None:
    """Remove the status file if ``owner_pid`` wrote it: never another monitor's."""
    path = status_path(log_dir)
    try:
        with open(path) as f:
            data = json.load(f)
        if int(data.get("pid", -1)) == owner_pid:
            os.unlink(path)
    except (OSError, ValueError, TypeError, AttributeError):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running(data: Dict[str, Any], pin_dir: str) -> bool:
    """Whether the daemon that wrote ``data`` still runs: the pin directory's lock holder or owner record
    first (what ``rawbpf load`` keeps), else the recorded pid and its start time (a reused pid fails)."""
    from rawbpf import owner

    if pin_dir and os.path.isdir(pin_dir):
        if owner.running(pin_dir) is not None:
            return True
        if owner.read_owner(pin_dir) is not None:
            return False  # the record's process is gone
    pid = int(data.get("pid", 0))
    if pid <= 0:
        return False
    start = data.get("pid_start")
    if start:
        return owner.process_start(pid) == int(start)
    return _alive(pid)


def _has_pins(pin_dir: str) -> bool:
    from rawbpf.owner import RECORD_PREFIX

    try:
        return any(not n.startswith(RECORD_PREFIX) for n in os.listdir(pin_dir))
    except OSError:
        return False


def _denied(path: str) -> ConfigError:
    return ConfigError(f"status: permission denied reading {path} (the monitor's pins and status need root)")


def _check_readable(path: str) -> bool:
    """True when path exists; raises the permission error a non-root user gets, instead of 'missing'."""
    try:
        os.stat(path)
    except PermissionError:
        raise _denied(path) from None
    except OSError:
        return False
    if os.path.isdir(path) and not os.access(path, os.R_OK | os.X_OK):
        raise _denied(path)
    return True


def find_log_dir(default_pin_root: str) -> Optional[str]:
    """The log directory of the monitor that owns ``<pin root>/claude_monitor``, found from the pin
    directory's owner (its lock holder or owner record): of the directories that process has open (it holds
    its log directory's lock) or, failing that, its ``--log-dir`` argument, the one with a status file. None
    when no monitor owns the pins; ConfigError when they cannot be read."""
    from rawbpf import owner
    from rawbpf.monitor import OBJECT_NAME

    pins = os.path.join(default_pin_root, OBJECT_NAME)
    if not _check_readable(pins):
        return None
    pid = owner.running(pins)
    if pid is None:
        return None
    candidates: List[str] = []
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except PermissionError:
        raise _denied(fd_dir) from None
    except OSError:
        fds = []
    for fd in fds:
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith("/"):
            candidates.append(target if os.path.isdir(target) else os.path.dirname(target))
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0")]
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        argv, cwd = [], "/"
    for i, a in enumerate(argv):
        if a == "--log-dir" and i + 1 < len(argv):
            candidates.append(os.path.join(cwd, argv[i + 1]))
        elif a.startswith("--log-dir="):
            candidates.append(os.path.join(cwd, a.split("=", 1)[1]))
    for d in candidates:
        if os.path.isfile(status_path(d)):
            return os.path.normpath(d)
    return None


def read_status(log_dir: str, default_pin_root: str = "/sys/fs/bpf/rawbpf") -> Dict[str, Any]:
    """The daemon's status file; ConfigError when no monitor runs with this log directory (saying so when a
    dead daemon left its pins behind)."""
    from rawbpf.monitor import OBJECT_NAME

    path = status_path(log_dir)
    try:
        with open(path) as f:
            data: Dict[str, Any] = json.load(f)
    except PermissionError:
        raise _denied(path) from None
    except FileNotFoundError:
        pins = os.path.join(default_pin_root, OBJECT_NAME)
        _refuse_stale(pins, None)
        raise ConfigError(f"status: no monitor is running with log directory {log_dir} (no {STATUS_NAME})") \
            from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"status: cannot read {path}: {err}") from err
    pid = int(data.get("pid", 0))
    pin_dir = str(data.get("pin_dir") or "")
    if not _running(data, pin_dir):
        _refuse_stale(pin_dir or os.path.join(default_pin_root, OBJECT_NAME), pid)
        raise ConfigError(f"status: the monitor (pid {pid}) is not running; {path} is stale")
    return data


def _refuse_stale(pin_dir: str, pid: Optional[int]) -> None:
    """Raise "not running (stale pins from pid N)" when a dead daemon left pins in ``pin_dir``."""
    from rawbpf import owner
    from rawbpf.monitor import OBJECT_NAME

    if not os.path.isdir(pin_dir) or not _has_pins(pin_dir) or owner.running(pin_dir) is not None:
        return
    rec = owner.read_owner(pin_dir)
    who = rec.pid if rec is not None else pid
    if who is None:
        return
    raise ConfigError(f"status: {OBJECT_NAME} is not running (stale pins from pid {who} in {pin_dir}; "
                      "the next rawbpf load removes them)")


def _sum(values: List[Any]) -> Any:
    """Element-wise sum of per-CPU decoded values (dicts, lists, ints)."""
    first = values[0]
    if isinstance(first, dict):
        return {k: _sum([v[k] for v in values]) for k in first}
    if isinstance(first, list):
        return [_sum([v[i] for v in values]) for i in range(len(first))]
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return sum(values)
    return first


def read_counters(pin_dir: str, btf: Any) -> Dict[str, Any]:
    """The program's per-CPU ``struct counters`` summed over CPUs; per-kind counters keyed by kind name."""
    from rawbpf.maps import Map
    from rawbpf.monitor.shape import Catalog
    from rawbpf.records import compile_struct

    t = btf.find("counters")
    if t is None:
        raise RawBPFError("status: the object's BTF has no struct counters")
    decode = compile_struct(btf, t.id)
    with Map.from_pin(os.path.join(pin_dir, "counters")) as m:
        per_cpu = m.lookup_percpu(0) or []
    if not per_cpu:
        return {}
    total: Dict[str, Any] = _sum([decode(bytes(v)) for v in per_cpu])
    kinds = Catalog.from_btf(btf).kinds
    per_kind = total.pop("kind", [])
    total["kinds"] = {name: per_kind[i] for i, name in sorted(kinds.items()) if i < len(per_kind)}
    return total


def read_programs(pin_dir: str) -> Dict[str, Dict[str, Any]]:
    """run_cnt, run_time_ns and average ns of every pinned program (BPF stats must be enabled to count)."""
    from rawbpf.programs import Program

    out: Dict[str, Dict[str, Any]] = {}
    progs = os.path.join(pin_dir, "progs")
    links = os.path.join(pin_dir, "links")
    for name in sorted(os.listdir(progs)) if os.path.isdir(progs) else []:
        with Program.from_pin(os.path.join(progs, name)) as p:
            info = p.info(with_insns=False)
        out[name] = {
            "id": info.id,
            "attached": os.path.exists(os.path.join(links, name)),
            "run_cnt": info.run_cnt,
            "run_time_ns": info.run_time_ns,
            "avg_ns": round(info.run_time_ns / info.run_cnt, 1) if info.run_cnt else None,
            "verified_insns": info.verified_insns,
        }
    return out


def count_tracked(pin_dir: str) -> int:
    from rawbpf.maps import Map

    with Map.from_pin(os.path.join(pin_dir, "tracked")) as m:
        return sum(1 for _ in m.keys())  # noqa: SIM118 (a BPF map, not a dict)


def ring_fill(pin_dir: str) -> Dict[str, int]:
    from rawbpf.ringbuf import RingBuffer

    with RingBuffer(os.path.join(pin_dir, "events"), callback=lambda _b: None) as rb:
        return {"size": rb.size, "used": rb.available()}


def collect(log_dir: str, default_pin_root: str = "/sys/fs/bpf/rawbpf") -> Dict[str, Any]:
    """Everything ``rawbpf status`` shows: the status file plus live reads of the pinned objects."""
    data = read_status(log_dir, default_pin_root)
    pin_dir = data.get("pin_dir") or os.path.join(default_pin_root, "claude_monitor")
    if not pin_dir or not _check_readable(pin_dir) or not os.path.isdir(pin_dir):
        raise ConfigError(f"status: the monitor's pin directory {pin_dir or '(none)'} is missing")
    from rawbpf.elf import load_spec

    spec = load_spec(data["object_path"])
    try:
        data["programs"] = read_programs(pin_dir)
        data["counters"] = read_counters(pin_dir, spec.btf)
        data["tracked_now"] = count_tracked(pin_dir)
        data["ring"] = ring_fill(pin_dir)
    except PermissionError:
        raise _denied(pin_dir) from None
    except RawBPFError as err:
        if getattr(err, "errno", None) in (1, 13):  # EPERM, EACCES: BPF_OBJ_GET needs privilege
            raise _denied(pin_dir) from None
        raise
    data["now"] = time.time_ns()
    return data


def _ago(ns: int) -> str:
    s = max(0, int(ns / 1e9))
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def format_text(d: Dict[str, Any]) -> str:
    """Human-readable status (pure); names from files and the kernel are escaped for the terminal."""
    lines = []
    up = _ago(d.get("now", time.time_ns()) - d.get("started", 0))
    lines.append(f"{escape(str(d.get('object', 'claude_monitor')))}: running (pid {d['pid']}, up {up})")
    lines.append(f"  log: {escape(str(d.get('log_dir')))}   pins: {escape(str(d.get('pin_dir')))}")
    log = d.get("log", {})
    current = escape(os.path.basename(log.get("current", "")))
    age = (d.get("now", time.time_ns()) - int(d.get("updated") or 0)) / 1e9 if d.get("updated") else None
    as_of = f" (as of {age:.1f} s ago)" if age is not None else ""
    lines.append(f"  records written: {log.get('records', 0)}{as_of}, lost: {d.get('lost_total', 0)} (live); "
                 f"log files: {len(log.get('files', []))} (current {current})")
    ring = d.get("ring", {})
    if ring.get("size"):
        pct = 100.0 * ring["used"] / ring["size"]
        lines.append(f"  ring: {_size(ring['used'])} of {_size(ring['size'])} in use ({pct:.1f}%)")
    lines.append(f"  tracked processes now: {d.get('tracked_now', 0)} "
                 f"(seeded at start: {d.get('seeded', 0)})")
    progs = d.get("programs", {})
    if progs:
        lines.append(f"  {'program':<22}{'attached':>9}{'runs':>12}{'avg ns':>10}")
        for name, p in progs.items():
            avg = "-" if p["avg_ns"] is None else f"{p['avg_ns']:.0f}"
            yes = "yes" if p["attached"] else "no"
            lines.append(f"  {escape(name):<22}{yes:>9}{p['run_cnt']:>12}{avg:>10}")
    c = d.get("counters", {})
    kinds = c.get("kinds", {})
    if kinds:
        lines.append(f"  {'events (live)':<22}{'seen':>12}{'tracked':>10}{'emitted':>10}{'lost':>8}")
        for name, k in kinds.items():
            lines.append(f"  {escape(name):<22}{k['seen']:>12}{k['tracked']:>10}{k['emitted']:>10}"
                         f"{k['lost']:>8}")
        lines.append(f"  connects filtered: {c.get('filtered', 0)}, "
                     f"tracked map full: {c.get('tracked_full', 0)}, forced wakeups: {c.get('wakeups', 0)}, "
                     f"unreadable user memory: {c.get('read_errors', 0)}, "
                     f"file events folded into counts: {c.get('file_summarised', 0)}")
    for s in d.get("sessions", []) or []:
        lines.append(f"  session {escape(str(s.get('session_id')))} (root pid {s.get('root_pid')}): "
                     f"transcript {escape(str(s.get('transcript')))}")
    return "\n".join(lines)


def lost_total(counters: Optional[Dict[str, Any]]) -> int:
    return sum(int(k.get("lost", 0)) for k in (counters or {}).get("kinds", {}).values())
