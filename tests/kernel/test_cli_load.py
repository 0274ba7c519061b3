"""``rawbpf load`` as a process: load, attach, pin, run until SIGINT/SIGTERM, then nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Tuple

import pytest
from load_support import wait_attached
from patience import patience

from rawbpf.errors import RawBPFError
from rawbpf.maps import Map
from rawbpf.programs import Program

ROOT = Path(__file__).resolve().parent.parent.parent
DATA = ROOT / "tests" / "data"


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rawbpf", "load", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen, sig: int) -> Tuple[int, str, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=patience(30))
    return proc.returncode, out, err


def prog_ids(pin: Path) -> List[int]:
    ids = []
    for p in sorted((pin / "progs").iterdir()):
        with Program.from_pin(p) as prog:
            ids.append(prog.id)
    return ids


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_load_attach_pin_and_clean_exit(pin_dir: Path, sig: int) -> None:
    proc = start(str(DATA / "tracepoints5.o"), "--pin-dir", str(pin_dir))
    try:
        lines = wait_attached(proc)
        assert sum(line.startswith("attached tp5_") for line in lines) == 5
        assert "attached tp5_exec → tracepoint sched:sched_process_exec" in lines
        obj = pin_dir / "tracepoints5"
        assert (obj / "tp5_events").exists()
        assert sorted(p.name for p in (obj / "links").iterdir()) == sorted(
            p.name for p in (obj / "progs").iterdir()
        )
        ids = prog_ids(obj)
        assert len(ids) == 5
    finally:
        code, out, err = stop(proc, sig)
    assert code == 0, err
    assert "stopped: detached 5 programs" in out
    assert not (pin_dir / "tracepoints5").exists()
    for prog_id in ids:  # unloaded (links are released by a kernel work item, so allow it a moment)
        assert _gone(prog_id), f"program id {prog_id} still loaded"


def _gone(prog_id: int, timeout: float = patience(5.0)) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            Program.from_id(prog_id).close()
        except RawBPFError:
            return True
        time.sleep(0.05)
    return False


def test_set_constants_and_programs_see_this_process(pin_dir: Path) -> None:
    proc = start(
        str(DATA / "globals.o"),
        "--pin-dir",
        str(pin_dir),
        "--set",
        "cfg_u32=99",
        "--set",
        "cfg_name=from-cli",
        "--set",
        f"target_tgid={os.getpid()}",
    )
    try:
        wait_attached(proc)
        obj = pin_dir / "globals"
        with Map.from_pin(obj / "globals_rodata") as ro:
            value = ro.lookup(0)
        assert value is not None and value[:4] == (99).to_bytes(4, "little") and b"from-cli" in value
        with Map.from_pin(obj / "globals_bss") as bss:
            for _ in range(3):
                os.getppid()
            raw = bss.lookup(0)
        assert raw is not None and int.from_bytes(raw[4:8], "little") >= 3  # getppid_hits
    finally:
        code, _out, err = stop(proc, signal.SIGINT)
    assert code == 0, err
    assert not (pin_dir / "globals").exists()


def test_no_attach(pin_dir: Path) -> None:
    proc = start(str(DATA / "tracepoints5.o"), "--pin-dir", str(pin_dir), "--no-attach")
    try:
        lines = wait_attached(proc)
        assert not any(line.startswith("attached tp5_") for line in lines)
        assert not (pin_dir / "tracepoints5" / "links").exists()
        assert len(list((pin_dir / "tracepoints5" / "progs").iterdir())) == 5
    finally:
        code, _out, _err = stop(proc, signal.SIGTERM)
    assert code == 0
    assert not (pin_dir / "tracepoints5").exists()


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["tests/data/not_elf.bin"], "object 'not_elf.bin': not an ELF file"),
        (["tests/data/wrong_machine.o"], "not a BPF object"),
        (["tests/data/truncated.o"], "object 'truncated.o': malformed ELF"),
        (["tests/data/no_license.o"], "'bpf_probe_read_kernel' is GPL-only"),
        (["tests/data/bad_btf.o"], "section '.BTF': bad BTF"),
        (["tests/data/sections_misc.o"], "section 'rawbpf_unknown/thing': unknown program section"),
        (["tests/data/verifier_reject.o"], "verifier_reject.c:21"),
        (["tests/data/globals.o", "--set", "nope=1"], "no global variable 'nope'"),
        (["tests/data/globals.o", "--set", "cfg_u32=-5"], "does not fit"),
        (["tests/data/globals.o", "--set", "novalue"], "expected NAME=VALUE"),
    ],
)
def test_bad_input_exits_1_with_one_line(pin_dir: Path, args: List[str], expect: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "rawbpf", "load", *args, "--pin-dir", str(pin_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=patience(60),
    )
    assert r.returncode == 1, r
    first = r.stderr.strip().splitlines()[0]
    assert expect in first, r.stderr
    assert first.startswith("rawbpf: ")
    assert r.stdout == "" or "loaded" in r.stdout
    assert not pin_dir.exists() or list(pin_dir.rglob("*")) == []


def test_refuses_a_pin_dir_in_use(pin_dir: Path) -> None:
    proc = start(str(DATA / "tracepoints5.o"), "--pin-dir", str(pin_dir))
    try:
        wait_attached(proc)
        r = subprocess.run(
            [sys.executable, "-m", "rawbpf", "load", str(DATA / "tracepoints5.o"), "--pin-dir", str(pin_dir)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=patience(60),
        )
        assert r.returncode == 1 and "already loaded" in r.stderr
    finally:
        code, _out, _err = stop(proc, signal.SIGINT)
    assert code == 0


@pytest.mark.parametrize(("flag", "where"), [("--kernel-core", "kernel"), ("--user-core", "user space")])
def test_core_placement_flag(pin_dir: Path, flag: str, where: str) -> None:
    proc = start(str(DATA / "tracepoints5.o"), "--pin-dir", str(pin_dir), flag)
    try:
        lines = wait_attached(proc)
        assert lines[0] == f"loaded tracepoints5: 5 programs, 1 maps, CO-RE in {where}"
    finally:
        code, _out, _err = stop(proc, signal.SIGINT)
    assert code == 0


MISSING_TP = r"""
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("tp/syscalls/sys_enter_getppid")
int fine(void *ctx) { return 0; }

SEC("tp/syscalls/sys_enter_rawbpf_no_such_syscall")
int nowhere(void *ctx) { return 0; }

char LICENSE[] SEC("license") = "GPL";
"""


def test_missing_tracepoint_exits_1_leaving_nothing(tmp_path: Path, pin_dir: Path) -> None:
    import platform

    src, obj = tmp_path / "missing_tp.c", tmp_path / "missing_tp.o"
    src.write_text(MISSING_TP)
    subprocess.run(
        [
            "clang",
            "-O2",
            "-g",
            "-target",
            "bpf",
            "-D__TARGET_ARCH_x86",
            f"-I{DATA / 'include'}",
            "-idirafter",
            f"/usr/include/{platform.machine()}-linux-gnu",
            "-c",
            str(src),
            "-o",
            str(obj),
        ],
        check=True,
    )
    r = subprocess.run(
        [sys.executable, "-m", "rawbpf", "load", str(obj), "--pin-dir", str(pin_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=patience(60),
    )
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith(
        "rawbpf: object 'missing_tp': section 'tp/syscalls/sys_enter_rawbpf_no_such_syscall'"
    )
    assert "sys_enter_rawbpf_no_such_syscall" in lines[0]
    assert not pin_dir.exists() or list(pin_dir.rglob("*")) == []


def test_pin_dir_off_bpffs_is_refused_before_loading(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "rawbpf", "load", str(DATA / "globals.o"), "--pin-dir",
                        str(tmp_path / "pins")], cwd=ROOT, capture_output=True, text=True,
                       timeout=patience(60))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip() == (f"rawbpf: --pin-dir {tmp_path / 'pins'}: {tmp_path} is not on a bpffs mount "
                                "(pins need one; mount one with: mount -t bpf bpf DIR)")
    assert not (tmp_path / "pins").exists()
