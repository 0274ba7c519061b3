"""The committed programs/claude_monitor.o: the programs, maps and record layouts user space relies on."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

import pytest

from rawbpf.consts import MapType
from rawbpf.elf import load_spec
from rawbpf.records import ring_decoder

OBJ = Path(__file__).resolve().parents[2] / "programs" / "claude_monitor.o"
FILE_SYSCALLS = ["open", "openat", "openat2", "creat", "unlink", "unlinkat", "rmdir", "rename", "renameat",
                 "renameat2", "mkdir", "mkdirat", "chmod", "fchmod", "fchmodat", "fchmodat2", "chown",
                 "lchown", "fchown", "fchownat", "link", "linkat", "symlink", "symlinkat", "truncate",
                 "ftruncate"]
NET_SYSCALLS = ["write", "writev", "sendto", "sendmsg", "sendmmsg", "read", "readv", "recvfrom", "recvmsg",
                "recvmmsg"]
HEADER = ["type", "flags", "ts", "pid", "tid", "ppid", "uid", "root_pid", "depth", "comm", "start",
          "parent_start", "root_start", "cgroup_id", "euid", "auid", "tty", "hpad", "attr"]


@pytest.fixture(scope="module")
def spec() -> Any:
    return load_spec(str(OBJ))


def test_programs_and_their_attach_points(spec: Any) -> None:
    got = {n: (p.attach_kind, p.attach_to) for n, p in spec.programs.items()}
    assert got == {
        "handle_exec": ("tracepoint", "sched/sched_process_exec"),
        "handle_fork": ("tracing", "sched_process_fork"),
        "handle_exit": ("tracepoint", "sched/sched_process_exit"),
        "handle_rename": ("tracing", "task_rename"),
        "handle_connect_exit": ("tracepoint", "syscalls/sys_exit_connect"),
        "handle_sock_state": ("tracing", "inet_sock_set_state"),
        **{f"files_exit_{sc}": ("tracepoint", f"syscalls/sys_exit_{sc}")
           for sc in FILE_SYSCALLS + NET_SYSCALLS},
    }
    assert spec.license == "GPL"


def test_maps(spec: Any) -> None:
    m = spec.maps
    assert (m["events"].type, m["events"].max_entries) == (MapType.RINGBUF, 4 << 20)
    assert (m["tracked"].type, m["tracked"].key_size) == (MapType.HASH, 4)
    pids = m["tracked_pids"]
    assert (pids.type, pids.max_entries * pids.value_size) == (MapType.ARRAY, 1 << 22)  # a byte per pid
    assert m["thread_procs"].type == MapType.TASK_STORAGE
    assert (m["endpoints"].type, m["endpoints"].key_size) == (MapType.LPM_TRIE, 20)
    assert (m["comm_rules"].type, m["comm_rules"].key_size) == (MapType.HASH, 16)
    assert m["counters"].type == MapType.PERCPU_ARRAY
    recent = m["file_recent"]
    assert (recent.type, recent.key_size, recent.value_size) == (MapType.HASH, 24, 16)
    assert (m["watch_names"].type, m["watch_names"].key_size) == (MapType.HASH, 32)
    assert (m["sock_watch"].type, m["sock_watch"].key_size) == (MapType.LRU_HASH, 8)
    assert (m["pending_conns"].type, m["pending_conns"].key_size) == (MapType.LRU_HASH, 8)


def test_the_attribution_a_tree_inherits(spec: Any) -> None:
    assert _members(spec, "attribution") == ["origin", "pad", "session_id", "traceparent"]
    origins = {v.name: v.value for v in spec.btf.find("origin").values}
    assert origins == {"ORIGIN_UNKNOWN": 0, "ORIGIN_CLAUDE": 1, "ORIGIN_TOOL": 2, "ORIGIN_HOOK": 3,
                       "ORIGIN_MCP": 4}


def _members(spec: Any, name: str) -> List[str]:
    t = spec.btf.find(name)
    assert t is not None, name
    return [mm.name for mm in t.members]


@pytest.mark.parametrize("kind", ["exec", "fork", "exit", "connect", "rename", "connect_result", "file",
                                  "dns", "tls"])
def test_every_record_starts_with_the_common_header(spec: Any, kind: str) -> None:
    assert _members(spec, f"rec_{kind}")[: len(HEADER)] == HEADER


def test_the_data_path_finds_the_tagged_family(spec: Any) -> None:
    dec = ring_decoder(spec.btf, "events")
    assert sorted(dec.kinds) == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    fork = bytearray(spec.btf.size_of(spec.btf.find("rec_fork").id))
    fork[0] = 2  # REC_FORK
    rec = dec.decode(bytes(fork))
    assert rec["type"] == "fork" and "child_pid" in rec
