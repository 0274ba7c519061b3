"""``rawbpf inspect`` and ``rawbpf disasm`` on committed objects: no root, exit codes, one-line errors."""

from __future__ import annotations

import json
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent / "data"
ROOT = Path(__file__).resolve().parent.parent.parent


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rawbpf", *args], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def test_inspect_json_has_everything() -> None:
    r = run("inspect", str(DATA / "maps_btf.o"), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    progs = {p["name"]: p for p in d["programs"]}
    assert progs["perf_out"]["attach_text"] == "tracepoint syscalls:sys_enter_getppid"
    maps = {m["name"]: m for m in d["maps"]}
    assert maps["events"]["declared_max_entries"] == 5000
    assert maps["events"]["max_entries"] == 2 * mmap.PAGESIZE
    assert maps["pinned_hash"]["pinning"] == "by_name"
    assert maps["lru"]["numa_node"] == 0
    assert maps["bloom"]["map_extra"] == 3
    assert maps["outer_hash"]["inner"]["type"] == "hash"
    assert maps["jump_table"]["values"] == [[1, "tail_one"], [3, "tail_three"]]
    assert d["relocations"] > 0


def test_inspect_globals_and_core_counts() -> None:
    d = json.loads(run("inspect", str(DATA / "globals.o"), "--json").stdout)
    g = {x["name"]: x for x in d["globals"]}
    assert g["cfg_u32"]["value"] == 7 and g["cfg_name"]["value"] == "rawbpf" and g["cfg_u32"]["readonly"]
    c = json.loads(run("inspect", str(DATA / "core.o"), "--json").stdout)
    assert c["core_relos"] > 10 and c["programs"][0]["core_relos"] == c["core_relos"]


def test_inspect_text_and_subprograms() -> None:
    r = run("inspect", str(DATA / "subprogs.o"))
    assert r.returncode == 0
    assert "prog_a: socket_filter [socket]" in r.stdout
    assert "+ chain_top, chain_mid, leaf, global_mix" in r.stdout


def test_inspect_shows_unknown_section() -> None:
    r = run("inspect", str(DATA / "sections_misc.o"))
    assert r.returncode == 0
    assert "misc_unknown: unspec [rawbpf_unknown/thing] → unknown section" in r.stdout


def test_disasm_interleaves_source_and_names_maps() -> None:
    r = run("disasm", str(DATA / "subprogs.o"), "prog_b")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "; subprogs.c:45: result_b = leaf(len) + global_mix(2, 5);" in out
    assert "\nleaf:\n" in out and "\nglobal_mix:\n" in out
    assert "map 'subprogs.bss' value + 8" in out
    assert "prog_a" not in out


def test_disasm_all_programs() -> None:
    r = run("disasm", str(DATA / "callbacks.o"))
    assert r.returncode == 0
    assert "program run_loop" in r.stdout and "program run_for_each" in r.stdout
    assert "bpf_loop" in r.stdout


def test_bad_input_one_line_exit_1() -> None:
    for name, what in [
        ("not_elf.bin", "not an ELF file"),
        ("bad_btf.o", "section '.BTF'"),
    ]:
        r = run("inspect", str(DATA / name))
        assert r.returncode == 1
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and what in lines[0] and name in lines[0], r.stderr
    r = run("disasm", str(DATA / "subprogs.o"), "nope")
    assert r.returncode == 1 and "no program 'nope'" in r.stderr


GOOD = [
    "attach_kinds.o",
    "callbacks.o",
    "core.o",
    "globals.o",
    "maps_btf.o",
    "maps_legacy.o",
    "sections_misc.o",
    "subprogs.o",
    "tracepoints5.o",
    "verifier_reject.o",
]


@pytest.mark.parametrize("name", GOOD)
def test_describe_and_disasm_every_corpus_object(name: str) -> None:
    from rawbpf.describe import describe, disasm_lines
    from rawbpf.elf import load_spec

    spec = load_spec(DATA / name)
    d = describe(spec)
    json.dumps(d)  # plain data only
    assert {p["name"] for p in d["programs"]} == set(spec.programs)
    for prog in spec.programs:
        lines = disasm_lines(spec, prog)
        assert lines and not any("<unknown>" in ln for ln in lines), prog
        n_insn = sum(1 for ln in lines if ln.strip()[:1].isdigit())
        assert n_insn > 0


def test_disasm_names_core_relocations() -> None:
    r = run("disasm", str(DATA / "core.o"))
    assert r.returncode == 0
    assert "; CO-RE field_byte_offset struct task_struct.pid" in r.stdout
    assert "; CO-RE enumval_value enum pid_type::PIDTYPE_SID" in r.stdout
    assert "; CO-RE field_lshift_u64 struct task_struct.in_execve" in r.stdout


def _as_nobody(args: list) -> tuple:
    """Run the CLI in a forked child that dropped root (so any bpf() call would fail with EPERM)."""
    import rawbpf.cli.inspect  # noqa: F401  (imported before dropping privileges)
    from rawbpf.cli import main

    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 99
        try:
            os.close(rfd)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            os.dup2(wfd, 1)
            os.dup2(wfd, 2)
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 (the test runner replaced them)
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            main(args)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd) as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


def test_inspect_and_disasm_need_no_privileges() -> None:
    if os.geteuid() != 0:  # already unprivileged
        assert run("inspect", str(DATA / "core.o")).returncode == 0
        return
    base = Path(tempfile.mkdtemp(prefix="rawbpf-inspect-"))
    try:
        os.chmod(base, 0o755)
        obj = base / "core.o"
        shutil.copy(DATA / "core.o", obj)
        os.chmod(obj, 0o644)
        code, out = _as_nobody(["inspect", str(obj), "--json"])
        assert code == 0, out
        assert json.loads(out)["core_relos"] > 10
        code, out = _as_nobody(["disasm", str(obj)])
        assert code == 0 and "CO-RE field_byte_offset struct task_struct.pid" in out, out
    finally:
        shutil.rmtree(base)
