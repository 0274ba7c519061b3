"""User-space CO-RE makes libbpf's decisions: the same patched value (or poison) for every relocation.

A tiny C loader against Debian's libbpf (built here with gcc) opens each object — with core_target.o as the
target BTF for core_local.o, the running kernel's vmlinux otherwise — and prints libbpf's debug log, whose
"patched insn"/"substituting insn" lines are compared with :func:`rawbpf.btf.core.relocate_program`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
from elftools.elf.elffile import ELFFile

from rawbpf.btf import BTF, core
from rawbpf.btf.ext import BTFExt

DATA = Path(__file__).resolve().parents[1] / "data"

LOADER = r"""
#include <bpf/libbpf.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return vfprintf(stdout, fmt, ap);
}

int main(int argc, char **argv)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts);
	struct bpf_object *obj;
	struct bpf_program *prog;
	int err, i;

	if (argc > 2 && argv[2][0])
		opts.btf_custom_path = argv[2];
	libbpf_set_print(print);
	obj = bpf_object__open_file(argv[1], &opts);
	if (!obj)
		return 2;
	bpf_object__for_each_program(prog, obj)
		for (i = 3; i < argc; i++)
			if (!strcmp(bpf_program__name(prog), argv[i]))
				bpf_program__set_autoload(prog, false);
	err = bpf_object__load(obj);
	bpf_object__close(obj);
	return err ? 1 : 0;
}
"""

PATCHED = re.compile(r"prog '(\w+)': relo #(\d+): patched insn #(\d+) \(([\w/]+)\) (imm64|imm|off) "
                     r"(\d+) -> (\d+)")
POISONED = re.compile(r"prog '(\w+)': relo #(\d+): substituting insn #(\d+) w/ invalid insn")


@pytest.fixture(scope="module")
def loader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None or not Path("/usr/include/bpf/libbpf.h").exists():
        pytest.skip("gcc or libbpf-dev missing")
    d = tmp_path_factory.mktemp("corelog")
    (d / "corelog.c").write_text(LOADER)
    subprocess.run(["gcc", "-O1", "-o", str(d / "corelog"), str(d / "corelog.c"), "-lbpf"], check=True)
    return d / "corelog"


Decision = Tuple[int, Optional[int]]  # (insn, new value; None = poisoned)


def libbpf_decisions(loader: Path, obj: Path, target: str, skip: List[str]) -> Dict[str, Dict[int, Decision]]:
    out = subprocess.run([str(loader), str(obj), target, *skip], capture_output=True, text=True).stdout
    got: Dict[str, Dict[int, Decision]] = {}
    for m in PATCHED.finditer(out):
        got.setdefault(m.group(1), {})[int(m.group(2))] = (int(m.group(3)), int(m.group(7)))
    for m in POISONED.finditer(out):
        prev = got.setdefault(m.group(1), {}).get(int(m.group(2)))
        insn = int(m.group(3)) if prev is None else min(prev[0], int(m.group(3)))  # ld_imm64: both halves
        got[m.group(1)][int(m.group(2))] = (insn, None)
    assert got, f"no CO-RE lines in libbpf's log:\n{out[-2000:]}"
    return got


def rawbpf_decisions(obj: Path, target: core.TargetBTF,
                     programs: Optional[List[str]] = None) -> Dict[str, Dict[int, Decision]]:
    with obj.open("rb") as f:
        elf = ELFFile(f)
        btf = BTF.parse(elf.get_section_by_name(".BTF").data())
        ext = BTFExt.parse(elf.get_section_by_name(".BTF.ext").data(), btf)
        funcs = {(elf.get_section(s["st_shndx"]).name, s.name) for s in elf.get_section_by_name(".symtab")
                 .iter_symbols() if s["st_info"]["type"] == "STT_FUNC"}
        code = {sec: bytearray(elf.get_section_by_name(sec).data()) for sec in ext.core_relos}
    got: Dict[str, Dict[int, Decision]] = {}
    for sec, relos in ext.core_relos.items():
        (prog,) = [name for s, name in funcs if s == sec]  # one program per section in these objects
        if programs is not None and prog not in programs:
            continue
        done = core.relocate_program(code[sec], relos, btf, target)
        got[prog] = {i: (a.insn, None if a.poisoned else a.new) for i, a in enumerate(done)}
    return got


def test_core_local_against_the_committed_target(loader: Path) -> None:
    obj, target = DATA / "btf" / "core_local.o", DATA / "btf" / "core_target.o"
    theirs = libbpf_decisions(loader, obj, str(target), ["ambiguous_prog"])
    with target.open("rb") as f:
        tbtf = BTF.parse(ELFFile(f).get_section_by_name(".BTF").data())
    ours = rawbpf_decisions(obj, tbtf, ["local_prog"])
    assert ours == theirs


@pytest.mark.parametrize("name", ["core.o", "tracepoints5.o"])
def test_objects_against_the_running_kernel(loader: Path, name: str) -> None:
    from rawbpf.btf import kernel

    theirs = libbpf_decisions(loader, DATA / name, "", [])
    ours = rawbpf_decisions(DATA / name, kernel.targets())
    assert ours == theirs
