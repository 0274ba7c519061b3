"""The libbpf section-name table: program type, expected attach type, attach target, flags."""

from __future__ import annotations

import pytest

from rawbpf import sections
from rawbpf.consts import AttachType, ProgType


@pytest.mark.parametrize(
    ("name", "ptype", "eat", "target", "kind"),
    [
        ("tp/syscalls/sys_enter_execve", ProgType.TRACEPOINT, 0, "syscalls/sys_enter_execve", "tracepoint"),
        (
            "tracepoint/sched/sched_process_exec",
            ProgType.TRACEPOINT,
            0,
            "sched/sched_process_exec",
            "tracepoint",
        ),
        ("raw_tp/sys_enter", ProgType.RAW_TRACEPOINT, 0, "sys_enter", "raw_tracepoint"),
        ("raw_tracepoint/sys_exit", ProgType.RAW_TRACEPOINT, 0, "sys_exit", "raw_tracepoint"),
        ("raw_tp.w/sys_exit", ProgType.RAW_TRACEPOINT_WRITABLE, 0, "sys_exit", "raw_tracepoint"),
        (
            "tp_btf/sched_process_fork",
            ProgType.TRACING,
            AttachType.TRACE_RAW_TP,
            "sched_process_fork",
            "tracing",
        ),
        ("fentry/do_nanosleep", ProgType.TRACING, AttachType.TRACE_FENTRY, "do_nanosleep", "tracing"),
        ("fexit/do_nanosleep", ProgType.TRACING, AttachType.TRACE_FEXIT, "do_nanosleep", "tracing"),
        ("lsm/file_open", ProgType.LSM, AttachType.LSM_MAC, "file_open", "lsm"),
        ("kprobe/do_nanosleep", ProgType.KPROBE, 0, "do_nanosleep", "kprobe"),
        ("kretprobe/do_nanosleep", ProgType.KPROBE, 0, "do_nanosleep", "kretprobe"),
        ("uprobe//bin/bash:readline", ProgType.KPROBE, 0, "/bin/bash:readline", "uprobe"),
        ("uretprobe//bin/bash:readline", ProgType.KPROBE, 0, "/bin/bash:readline", "uretprobe"),
        ("uprobe", ProgType.KPROBE, 0, "", "uprobe"),
        ("socket", ProgType.SOCKET_FILTER, 0, "", ""),
        ("xdp", ProgType.XDP, AttachType.XDP, "", ""),
        ("xdp/devmap", ProgType.XDP, AttachType.XDP_DEVMAP, "", ""),
        ("tc", ProgType.SCHED_CLS, 0, "", ""),
        ("classifier", ProgType.SCHED_CLS, 0, "", ""),
        ("cgroup_skb/ingress", ProgType.CGROUP_SKB, AttachType.CGROUP_INET_INGRESS, "", ""),
        ("cgroup/connect4", ProgType.CGROUP_SOCK_ADDR, AttachType.CGROUP_INET4_CONNECT, "", ""),
        ("cgroup/dev", ProgType.CGROUP_DEVICE, AttachType.CGROUP_DEVICE, "", ""),
        ("iter/task", ProgType.TRACING, AttachType.TRACE_ITER, "task", "iter"),
        ("syscall", ProgType.SYSCALL, 0, "", ""),
    ],
)
def test_known_sections(name: str, ptype: ProgType, eat: int, target: str, kind: str) -> None:
    info = sections.lookup(name)
    assert info is not None, name
    assert info.prog_type == ptype
    assert info.expected_attach_type == eat
    assert info.attach_to == target
    assert info.attach_kind == kind


@pytest.mark.parametrize(
    "name", ["rawbpf_unknown/thing", "tpx/a/b", "socket/extra", "xdpfoo", "tp_btfx/a", ""]
)
def test_unknown_sections(name: str) -> None:
    assert sections.lookup(name) is None


def test_sleepable_and_frags_flags() -> None:
    assert sections.lookup("fentry.s/do_nanosleep").prog_flags == 1 << 4  # type: ignore[union-attr]
    assert sections.lookup("xdp.frags").prog_flags == sections.BPF_F_XDP_HAS_FRAGS  # type: ignore[union-attr]
    assert sections.lookup("tp/a/b").prog_flags == 0  # type: ignore[union-attr]


def test_prefix_order_prefers_longest_spelling() -> None:
    assert sections.lookup("uprobe.s//bin/x:f").prog_flags == 1 << 4  # type: ignore[union-attr]
    assert sections.lookup("sk_reuseport/migrate").expected_attach_type == (  # type: ignore[union-attr]
        AttachType.SK_REUSEPORT_SELECT_OR_MIGRATE
    )


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("syscalls/sys_enter_execve", ("syscalls", "sys_enter_execve")),
        ("noslash", ("", "")),
        ("a/b/c", ("", "")),
        ("/x", ("", "")),
    ],
)
def test_split_tracepoint(target: str, expected: tuple) -> None:
    assert sections.split_tracepoint(target) == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/bin/bash:readline", ("/bin/bash", "readline", 0)),
        ("/bin/bash:readline+0x10", ("/bin/bash", "readline", 16)),
        ("/lib/libc.so.6:0x1234", ("/lib/libc.so.6", "", 0x1234)),
        ("nocolon", ("", "", 0)),
        ("/bin/x:f+zz", ("", "", 0)),
    ],
)
def test_split_uprobe(target: str, expected: tuple) -> None:
    assert sections.split_uprobe(target) == expected
