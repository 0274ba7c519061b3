"""Externs the loader resolves: __kconfig values, kfuncs and a typeless __ksym, equal to libbpf's tags.

The sources are compiled here with clang (the corpus has no externs); vmlinux BTF on this kernel carries
per-CPU variables only and kallsyms lists no data symbols, so a typed variable ksym cannot resolve here
(for libbpf neither) and the typeless one names a function.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest
from kernel_limits import require
from patience import patience

from rawbpf.collection import Collection
from rawbpf.elf import load_spec
from rawbpf.errors import RelocationError
from rawbpf.externs import kernel_version_code

ROOT = Path(__file__).resolve().parent.parent.parent
INCLUDE = ROOT / "tests" / "data" / "include"

EXTERNS_C = r"""
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

extern int LINUX_KERNEL_VERSION __kconfig;
extern int CONFIG_RAWBPF_NOT_A_REAL_OPTION __kconfig __weak;
extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;

__u64 kver;
__u64 weak_opt;
__u32 found_tgid;
__u32 target_tgid;

SEC("tp_btf/sched_process_fork")
int ext_fork(u64 *ctx)
{
	if ((__u32)(bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	kver = LINUX_KERNEL_VERSION;
	weak_opt = CONFIG_RAWBPF_NOT_A_REAL_OPTION;
	struct task_struct *t = bpf_task_from_pid(target_tgid);
	if (t) {
		found_tgid = BPF_CORE_READ(t, tgid);
		bpf_task_release(t);
	}
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""

TYPELESS_C = r"""
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>

extern const void schedule __ksym;
extern const void rawbpf_no_such_symbol __ksym __weak;
__u64 addr;
__u64 missing;

SEC("socket")
int typeless(struct __sk_buff *skb)
{
	addr = (__u64)&schedule;
	missing = (__u64)&rawbpf_no_such_symbol;
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""


def compile_bpf(tmp: Path, name: str, source: str) -> Path:
    clang = shutil.which("clang")
    if clang is None:
        pytest.fail("clang is needed to build the extern test objects")
    src, obj = tmp / f"{name}.c", tmp / f"{name}.o"
    src.write_text(source)
    multiarch = f"/usr/include/{platform.machine()}-linux-gnu"
    subprocess.run(
        [
            clang,
            "-O2",
            "-g",
            "-target",
            "bpf",
            "-Wall",
            "-Werror",
            "-D__TARGET_ARCH_x86",
            f"-I{INCLUDE}",
            "-idirafter",
            multiarch,
            "-c",
            str(src),
            "-o",
            str(obj),
        ],
        check=True,
    )
    return obj


@pytest.fixture(scope="module")
def loader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("libbpf") / "libbpf_loader"
    subprocess.run(
        ["gcc", "-O1", "-Wall", "-Werror", "-o", str(out), str(ROOT / "tools" / "libbpf_loader.c"), "-lbpf"],
        check=True,
    )
    return out


def libbpf_tag(loader: Path, obj: Path, pin_dir: Path) -> dict:
    r = subprocess.run([str(loader), str(obj), str(pin_dir)], capture_output=True, text=True,
                       timeout=patience(60))
    assert r.returncode == 0, r.stderr
    return {line.split()[0]: line.split()[1] for line in r.stdout.splitlines()}


def test_kconfig_and_kfuncs(tmp_path: Path, loader: Path, pin_dir: Path) -> None:
    from rawbpf.btf import Kind
    from rawbpf.btf.kernel import vmlinux

    require(vmlinux().find("bpf_task_from_pid", Kind.FUNC) is not None, "the bpf_task_from_pid kfunc", "6.2")
    obj = compile_bpf(tmp_path, "externs", EXTERNS_C)
    spec = load_spec(obj)
    assert {e.name: e.kind for e in spec.externs.values()} == {
        "LINUX_KERNEL_VERSION": "kconfig",
        "CONFIG_RAWBPF_NOT_A_REAL_OPTION": "kconfig",
        "bpf_task_from_pid": "kfunc",
        "bpf_task_release": "kfunc",
    }
    want = libbpf_tag(loader, obj, pin_dir)
    with Collection.load(spec) as c:
        assert {n: p.info().tag.hex() for n, p in c.programs.items()} == want
        c.variables["target_tgid"] = os.getpid()
        c.attach_all()
        subprocess.run(["true"], check=True)  # sched_process_fork in this process
        assert c.variables["kver"] == kernel_version_code()
        assert c.variables["weak_opt"] == 0
        assert c.variables["found_tgid"] == os.getpid()


def test_typeless_ksym_is_the_kallsyms_address(tmp_path: Path, loader: Path, pin_dir: Path) -> None:
    obj = compile_bpf(tmp_path, "typeless", TYPELESS_C)
    want = libbpf_tag(loader, obj, pin_dir)
    kallsyms = Path("/proc/kallsyms").read_text().splitlines()
    addr = next(int(line.split()[0], 16) for line in kallsyms if line.split()[2] == "schedule")
    with Collection.load(load_spec(obj)) as c:
        assert {n: p.info().tag.hex() for n, p in c.programs.items()} == want
        c.programs["typeless"].test_run(bytes(64))
        assert c.variables["addr"] == addr and c.variables["missing"] == 0


def test_unresolvable_strong_ksym_is_one_clear_error(tmp_path: Path) -> None:
    obj = compile_bpf(tmp_path, "strong", TYPELESS_C.replace("schedule", "rawbpf_not_in_kallsyms"))
    with pytest.raises(
        RelocationError,
        match=r"^object 'strong': extern 'rawbpf_not_in_kallsyms': symbol not "
        r"found in /proc/kallsyms$",
    ):
        Collection.load(load_spec(obj))
