"""Helpers for the monitor's kernel tests: a loaded claude_monitor whose ring is consumed in-process, and the
scripted workload."""

from __future__ import annotations

import ipaddress
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Set

ROOT = Path(__file__).resolve().parents[2]
OBJ = ROOT / "programs" / "claude_monitor.o"
sys.path.insert(0, str(ROOT / "tests"))

from patience import patience  # noqa: E402
from workload import driver  # noqa: E402

from rawbpf.monitor.config import MonitorConfig, endpoint_key  # noqa: E402
from rawbpf.monitor.shape import Catalog, Shaper  # noqa: E402

TEST_ENDPOINTS = {"127.0.0.0/8": "loopback-test", "::1/128": "loopback6-test"}


class Monitor:
    """A loaded, attached claude_monitor whose ring is consumed into ``records`` (shaped like the log)."""

    def __init__(self, coll: Any, rb: Any, records: List[Dict[str, Any]], files: Any = None) -> None:
        self.coll = coll
        self.rb = rb
        self.records = records
        self.files = files  # the FileShaping state of the shaper

    def drain(self) -> None:
        self.rb.drain()

    def wait_for(self, pred: Callable[[Dict[str, Any]], bool],
                 timeout: float = patience(10.0)) -> Dict[str, Any]:
        """Drain until a record satisfies ``pred`` (records arrive on the consumer's timer)."""
        deadline = time.monotonic() + timeout
        while True:
            self.rb.poll(50)
            for r in self.records:
                if pred(r):
                    return r
            if time.monotonic() > deadline:
                raise AssertionError("expected record never arrived")

    def counters(self) -> Dict[str, Any]:
        from rawbpf.monitor.status import _sum
        from rawbpf.records import compile_struct

        btf = self.coll.spec.btf
        dec = compile_struct(btf, btf.find("counters").id)
        total: Dict[str, Any] = _sum([dec(bytes(v)) for v in self.coll.maps["counters"].lookup_percpu(0)])
        kinds = Catalog.from_btf(btf).kinds
        total["kinds"] = {name: total["kind"][i] for i, name in kinds.items()}
        return total


@contextmanager
def monitor(cfg: Optional[MonitorConfig] = None, endpoints: Optional[Dict[str, str]] = None
            ) -> Iterator[Monitor]:
    from rawbpf.collection import Collection
    from rawbpf.elf import load_spec
    from rawbpf.logfile import boot_id
    from rawbpf.monitor.cgroups import CgroupPaths
    from rawbpf.monitor.run import file_shaping, prepare, skip_missing_syscalls
    from rawbpf.monitor.shape_runs import RunShaper
    from rawbpf.records import ring_decoder
    from rawbpf.ringbuf import RingBuffer

    cfg = cfg or MonitorConfig()
    spec = load_spec(str(OBJ))
    skip_missing_syscalls(spec, lambda line: None)  # as `rawbpf load` does (fchmodat2 arrived in 6.6)
    if cfg.ring_bytes:
        spec.maps["events"].max_entries = cfg.ring_bytes
    records: List[Dict[str, Any]] = []
    with Collection.load(spec, constants=cfg.constants()) as coll:
        prepare(coll, cfg)
        for cidr, name in (TEST_ENDPOINTS if endpoints is None else endpoints).items():
            coll.maps["endpoints"].update(endpoint_key(ipaddress.ip_network(cidr)),
                                          name.encode().ljust(32, b"\0"))
        dec = ring_decoder(coll.spec.btf, "events")
        files = file_shaping(cfg)
        shaper = Shaper(Catalog.from_btf(coll.spec.btf), 0, boot_id=boot_id(), cgroup_path=CgroupPaths(),
                        files=files)

        shape = RunShaper(shaper, dec)  # the daemon's path: exec/fork/exit compiled, the rest generic

        def keep(buf: Any, runs: List[Any]) -> None:
            for r in shape(buf, runs, time.time_ns()):  # a record Shaper drops is not there
                del r["seq"]
                records.append(r)

        with RingBuffer(coll.maps["events"], sink=keep) as rb:
            coll.attach_all()
            yield Monitor(coll, rb, records, files)


def run_workload(tmp: Path, **kw: Any) -> Dict[str, Any]:
    return driver.run(tmp / "workload", **kw)


def of_tree(records: List[Dict[str, Any]], root: int) -> List[Dict[str, Any]]:
    return [r for r in records if r.get("root_pid") == root]


def monitor_program_names() -> Set[str]:
    """The programs `rawbpf load` attaches (and detaches on the way out) on this kernel: all of the object's
    but those of syscall tracepoints the kernel lacks (fchmodat2 before Linux 6.6). Asked when a test needs
    them, not at import, as finding tracepoints may mount tracefs."""
    from rawbpf.elf import load_spec
    from rawbpf.monitor.run import skip_missing_syscalls

    spec = load_spec(str(OBJ))
    return set(spec.programs) - set(skip_missing_syscalls(spec, lambda line: None))


def monitor_programs() -> int:
    """How many programs `rawbpf load` attaches on this kernel (see monitor_program_names)."""
    return len(monitor_program_names())
