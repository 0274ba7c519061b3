"""Attaching against the real kernel: tracepoints (perf link and the ioctl fallback), raw tracepoints,
tp_btf and uprobes fire, stop firing when the Link closes, and bad targets fail in one line without leaking
an fd."""

from __future__ import annotations

import errno
import os
import re
import shutil
import struct
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from kernel_limits import require
from patience import patience

from rawbpf.attach import (
    Link,
    attach_raw_tracepoint,
    attach_tracepoint,
    attach_tracing,
    attach_uprobe,
    symbol_offset,
    tracepoint_id,
)
from rawbpf.consts import AttachType, MapType, ProgType
from rawbpf.errors import ConfigError, RawBPFError, SyscallError
from rawbpf.maps import Map
from rawbpf.programs import Program, enable_stats

PERF_LINK_INFO = "perf link info (a perf link's tracepoint name, probe type and target)"


def I(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:  # noqa: E743
    return struct.pack("<BBhi", op, dst | src << 4, off, imm)


def counter(m: Map, tgid: int = 0) -> bytes:
    """Add 1 to slot 0 of array ``m`` on every hit (only for process ``tgid`` when given)."""
    head = b""
    if tgid:
        head = b"".join([
            I(0x85, 0, 0, 0, 14),          # call bpf_get_current_pid_tgid
            I(0x77, 0, 0, 0, 32),          # r0 >>= 32
            I(0x55, 0, 0, 9, tgid),        # if r0 != tgid goto exit
        ])
    return head + b"".join([
        I(0x18, 1, 1, 0, m.fd), I(0),      # r1 = map
        I(0x62, 10, 0, -4, 0),             # key = 0
        I(0xBF, 2, 10), I(0x07, 2, 0, 0, -4),
        I(0x85, 0, 0, 0, 1),               # call bpf_map_lookup_elem
        I(0x15, 0, 0, 2, 0),               # if r0 == 0 goto +2
        I(0xB7, 1, 0, 0, 1),
        I(0xDB, 0, 1, 0, 0),               # lock *(u64 *)(r0 + 0) += r1
        I(0xB7, 0, 0, 0, 0),
        I(0x95),
    ])


@pytest.fixture()
def hits() -> Iterator[Map]:
    with Map.create(MapType.ARRAY, 4, 8, 1, name=f"hits_{uuid.uuid4().hex[:6]}") as m:
        yield m


def count(m: Map) -> int:
    return m.lookup_int(0) or 0


@pytest.mark.parametrize("use_perf_link", [None, True, False], ids=["auto", "perf-link", "ioctl"])
def test_tracepoint_fires_and_detaches(hits: Map, use_perf_link: object) -> None:
    with Program.load(ProgType.TRACEPOINT, counter(hits, os.getpid()), name="tp_getppid") as prog:
        link = attach_tracepoint(prog, "syscalls", "sys_enter_getppid", use_perf_link=use_perf_link)  # type: ignore[arg-type]
        assert link.via_ioctl is (use_perf_link is False)
        for _ in range(7):
            os.getppid()
        assert count(hits) == 7
        link_id, perf_info = 0, True
        if not link.via_ioctl:
            info = link.info()
            link_id = info.id
            assert info.prog_id == prog.id
            # kernels before 6.6 answer a perf link's info with its type and program only
            perf_info = bool(info.target or info.perf_event_type)
            assert not perf_info or info.target == "sys_enter_getppid"
        link.close()
        link.close()  # idempotent
        for _ in range(5):
            os.getppid()
        assert count(hits) == 7, "the program still runs after the link was closed"
        if link_id:
            with pytest.raises(SyscallError) as ei:
                Link.from_id(link_id)
            assert ei.value.errno == errno.ENOENT
    require(perf_info, PERF_LINK_INFO, "6.6")


def test_stats_count_attached_runs(hits: Map) -> None:
    with Program.load(ProgType.TRACEPOINT, counter(hits, os.getpid()), name="tp_stats") as prog, \
            enable_stats(), attach_tracepoint(prog, "syscalls", "sys_enter_getppid"):
        for _ in range(10):
            os.getppid()
        info = prog.info(with_insns=False)
    assert info.run_cnt >= 10 and info.run_time_ns > 0


def test_missing_tracepoint_is_one_line(hits: Map) -> None:
    with Program.load(ProgType.TRACEPOINT, counter(hits), name="tp_missing") as prog:
        with pytest.raises(ConfigError) as ei:
            attach_tracepoint(prog, "syscalls", "sys_enter_no_such_call")
        msg = str(ei.value)
        assert msg.startswith("attach program 'tp_missing' to tracepoint syscalls/sys_enter_no_such_call: "
                              "no such tracepoint")
        assert "\n" not in msg
        with pytest.raises(ConfigError, match="bad tracepoint name"):
            attach_tracepoint(prog, "syscalls", "../../etc")
        with pytest.raises(SyscallError) as ei2:
            attach_raw_tracepoint(prog, "no_such_raw_tp_here")
        assert "raw tracepoint no_such_raw_tp_here" in str(ei2.value)


def test_wrong_program_type_for_tracepoint_fails_cleanly(hits: Map) -> None:
    with Program.load(ProgType.SOCKET_FILTER, I(0xB7, 0, 0, 0, 0) + I(0x95), name="notp") as prog:
        for mode in (None, False):
            with pytest.raises(SyscallError) as ei:
                attach_tracepoint(prog, "syscalls", "sys_enter_getppid", use_perf_link=mode)
            assert "attach program 'notp'" in str(ei.value)


def test_tracepoint_id_reads_tracefs() -> None:
    tid = tracepoint_id("syscalls", "sys_enter_getppid")
    with open("/sys/kernel/tracing/events/syscalls/sys_enter_getppid/id") as f:
        assert tid == int(f.read())


def test_raw_tracepoint_fires(hits: Map) -> None:
    with Program.load(ProgType.RAW_TRACEPOINT, counter(hits, os.getpid()), name="rawtp") as prog:
        with attach_raw_tracepoint(prog, "sys_enter") as link:
            info = link.info()
            assert info.target == "sys_enter" and info.prog_id == prog.id
            before = count(hits)
            for _ in range(5):
                os.getppid()
            assert count(hits) - before >= 5
        after = count(hits)
        os.getppid()
        assert count(hits) == after


def _vmlinux_type_id(name: str) -> int:
    """The BTF id of ``name`` in the running kernel's vmlinux BTF."""
    try:
        from rawbpf.btf import BTF

        with open("/sys/kernel/btf/vmlinux", "rb") as f:
            t = BTF.parse(f.read()).find(name)
        if t is not None:
            return int(t.id)
    except ImportError:
        pass
    out = subprocess.run(["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "raw"],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(rf"^\[(\d+)\] TYPEDEF '{re.escape(name)}'", out, re.M)
    assert m, f"{name} not in vmlinux BTF"
    return int(m.group(1))


@pytest.mark.parametrize("use_link_create", [None, False], ids=["link-create", "raw-tracepoint-open"])
def test_tp_btf_fires(hits: Map, use_link_create: object) -> None:
    btf_id = _vmlinux_type_id("btf_trace_sys_enter")
    with Program.load(ProgType.TRACING, counter(hits, os.getpid()), name="tpbtf",
                      expected_attach_type=AttachType.TRACE_RAW_TP, attach_btf_id=btf_id) as prog:
        with attach_tracing(prog, use_link_create=use_link_create) as link:  # type: ignore[arg-type]
            info = link.info()
            assert info.prog_id == prog.id
            assert info.type == 1 and info.target == "sys_enter"  # tp_btf makes a raw tracepoint link
            before = count(hits)
            for _ in range(5):
                os.getppid()
            assert count(hits) - before >= 5
        after = count(hits)
        os.getppid()
        assert count(hits) == after


UPROBE_C = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((noinline)) int rawbpf_target(int x) { __asm__ volatile("" ::: "memory"); return x * 2; }
int main(int argc, char **argv) {
    int n = atoi(argv[1]), s = 0;
    if (argc > 2) getchar();  /* wait until the test has attached */
    for (int i = 0; i < n; i++) s += rawbpf_target(i);
    printf("%d\n", s);
    return 0;
}
"""


@pytest.fixture(scope="module")
def target_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    d = tmp_path_factory.mktemp("uprobe")
    src = d / "target.c"
    src.write_text(UPROBE_C)
    exe = d / f"target_{uuid.uuid4().hex[:6]}"
    subprocess.run([gcc, "-O1", "-o", str(exe), str(src)], check=True)
    return exe


def _nm_offset(exe: Path, symbol: str) -> int:
    out = subprocess.run(["nm", str(exe)], capture_output=True, text=True, check=True).stdout
    addr = next(int(ln.split()[0], 16) for ln in out.splitlines() if ln.endswith(" " + symbol))
    return addr  # PIE executables: the text segment's vaddr equals its file offset


def test_symbol_offset_matches_nm(target_binary: Path) -> None:
    assert symbol_offset(str(target_binary), "rawbpf_target") == _nm_offset(target_binary, "rawbpf_target")
    with pytest.raises(ConfigError, match="no function symbol 'nope'"):
        symbol_offset(str(target_binary), "nope")
    with pytest.raises(ConfigError, match="not a valid ELF"):
        symbol_offset(__file__, "x")


@pytest.mark.parametrize("retprobe", [False, True], ids=["uprobe", "uretprobe"])
@pytest.mark.parametrize("use_perf_link", [None, False], ids=["auto", "ioctl"])
def test_uprobe_fires(hits: Map, target_binary: Path, retprobe: bool, use_perf_link: object) -> None:
    with Program.load(ProgType.KPROBE, counter(hits), name="uprobe") as prog:
        with attach_uprobe(prog, str(target_binary), "rawbpf_target", retprobe=retprobe,
                           use_perf_link=use_perf_link) as link:  # type: ignore[arg-type]
            subprocess.run([str(target_binary), "13"], check=True, capture_output=True)
            assert count(hits) == 13
            perf_info = True
            if not link.via_ioctl:
                info = link.info()
                assert info.prog_id == prog.id
                perf_info = bool(info.target or info.perf_event_type)  # before 6.6: neither
                if perf_info:
                    assert info.perf_event_type == (2 if retprobe else 1)
                    assert info.target == f"{target_binary}:{_nm_offset(target_binary, 'rawbpf_target'):#x}"
        subprocess.run([str(target_binary), "4"], check=True, capture_output=True)
        assert count(hits) == 13
    require(perf_info, PERF_LINK_INFO, "6.6")


def test_uprobe_pid_filter_and_raw_offset(hits: Map, target_binary: Path) -> None:
    offset = _nm_offset(target_binary, "rawbpf_target")
    with Program.load(ProgType.KPROBE, counter(hits), name="uprobe_pid") as prog:
        pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
        mine = subprocess.Popen([str(target_binary), "6", "wait"], **pipes)  # type: ignore[call-overload]
        other = subprocess.Popen([str(target_binary), "9", "wait"], **pipes)  # type: ignore[call-overload]
        try:
            with attach_uprobe(prog, str(target_binary), offset=offset, pid=mine.pid) as link:
                assert f"{target_binary}:{offset:#x}" in link.label
                other.communicate(b"go\n", timeout=patience(30))
                mine.communicate(b"go\n", timeout=patience(30))
                assert count(hits) == 6, "only the chosen process may hit a pid-bound uprobe"
        finally:
            for p in (mine, other):
                if p.poll() is None:
                    p.kill()
                    p.wait()


def test_uprobe_bad_input(hits: Map, target_binary: Path) -> None:
    with Program.load(ProgType.KPROBE, counter(hits), name="uprobe_bad") as prog:
        with pytest.raises(ConfigError, match="no such file"):
            attach_uprobe(prog, "/nonexistent/binary", "main")
        with pytest.raises(ConfigError, match="no function symbol"):
            attach_uprobe(prog, str(target_binary), "no_such_function")
    with Program.load(ProgType.TRACEPOINT, counter(hits), name="notkprobe") as tp, \
            pytest.raises(ConfigError, match="needs a kprobe-type program"):
        attach_uprobe(tp, str(target_binary), "rawbpf_target")


def test_ioctl_link_cannot_be_pinned(hits: Map, tmp_path: Path) -> None:
    with Program.load(ProgType.TRACEPOINT, counter(hits), name="tp_ioctl") as prog, \
            attach_tracepoint(prog, "syscalls", "sys_enter_getppid", use_perf_link=False) as link:
        with pytest.raises(RawBPFError, match="perf event ioctl"):
            link.pin(tmp_path / "x")
        link.detach()
        assert link.closed


def test_library_names_resolve_like_the_loader() -> None:
    from rawbpf.attach import resolve_binary

    libc = resolve_binary("libc.so.6")
    assert os.path.isabs(libc) and os.path.isfile(libc)
    assert symbol_offset(libc, "getpid") > 0
    assert resolve_binary("true") == os.path.abspath(shutil.which("true") or "")


def test_link_ids_list_a_live_link(hits: Map) -> None:
    from rawbpf.attach import iter_link_ids

    with Program.load(ProgType.RAW_TRACEPOINT, counter(hits), name="linkids") as prog, \
            attach_raw_tracepoint(prog, "sys_exit") as link:
        assert link.id in set(iter_link_ids())


def test_stack_trace_map_holds_kernel_stacks(hits: Map) -> None:
    depth = 32
    with Map.create(MapType.STACK_TRACE, 4, 8 * depth, 64, name=f"stk_{uuid.uuid4().hex[:6]}") as stacks:
        insns = b"".join([
            I(0xBF, 6, 1),                                      # 0: r6 = ctx
            I(0x85, 0, 0, 0, 14), I(0x77, 0, 0, 0, 32),         # 1-2: r0 = tgid
            I(0x55, 0, 0, 15, os.getpid()),                     # 3: if r0 != our pid goto 19
            I(0x18, 2, 1, 0, stacks.fd), I(0),                  # 4-5: r2 = stack map
            I(0xBF, 1, 6), I(0xB7, 3, 0, 0, 0),                 # 6-7: r1 = ctx, r3 = 0
            I(0x85, 0, 0, 0, 27),                               # 8: call bpf_get_stackid
            I(0xBF, 7, 0),                                      # 9: r7 = stack id
            I(0xC5, 7, 0, 8, 0),                                # 10: if r7 s< 0 goto 19
            I(0x18, 1, 1, 0, hits.fd), I(0),                    # 11-12: r1 = hits
            I(0x62, 10, 0, -4, 0), I(0xBF, 2, 10), I(0x07, 2, 0, 0, -4),  # 13-15: key 0
            I(0x85, 0, 0, 0, 1),                                # 16: call bpf_map_lookup_elem
            I(0x15, 0, 0, 1, 0),                                # 17: if r0 == 0 goto 19
            I(0x7B, 0, 7, 0, 0),                                # 18: *(u64 *)(r0 + 0) = r7
            I(0xB7, 0, 0, 0, 0), I(0x95),                       # 19-20: return 0
        ])
        hits.update(0, (1 << 64) - 1)
        # raw_syscalls, not syscalls/sys_enter_*: on 6.1 the latter hand programs the task's user registers,
        # so bpf_get_stackid finds no kernel stack there (-EFAULT); raw_syscalls gives one on 6.1 and 6.18
        with Program.load(ProgType.TRACEPOINT, insns, name="stackid") as prog, \
                attach_tracepoint(prog, "raw_syscalls", "sys_enter"):
            os.getppid()
        stack_id = hits.lookup_int(0)
        assert stack_id is not None and stack_id < 64
        frames = struct.unpack(f"<{depth}Q", stacks.lookup(stack_id) or b"")
        assert frames[0] >= 0xFFFF800000000000, "the first frame is a kernel address"
        assert stack_id.to_bytes(4, "little") in set(stacks.keys())
        assert stacks.delete(stack_id) and stacks.lookup(stack_id) is None
