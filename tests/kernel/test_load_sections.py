"""Conventions beyond the corpus, checked against libbpf: ``SEC("?…")`` (not loaded by default), ``iter/``
programs (attach BTF id of ``bpf_iter_<target>``) and hidden global subprograms (verified as static).
Sources are compiled here with clang."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from patience import patience

from rawbpf.collection import Collection
from rawbpf.elf import load_spec
from rawbpf.errors import RelocationError

ROOT = Path(__file__).resolve().parent.parent.parent
INCLUDE = ROOT / "tests" / "data" / "include"

SOURCE = r"""
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>

__u64 runs;

SEC("socket")
int always(struct __sk_buff *skb)
{
	runs++;
	return 1;
}

SEC("?socket")
int optional(struct __sk_buff *skb)
{
	return 2;
}

struct bpf_iter_meta;
struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
} __attribute__((preserve_access_index));

SEC("iter/task")
int count_tasks(struct bpf_iter__task *ctx)
{
	if (ctx->task)
		runs++;
	return 0;
}

/* hidden global: libbpf verifies it as a static function (it dereferences its context argument) */
__attribute__((visibility("hidden"))) __noinline int helper(struct __sk_buff *skb, int x)
{
	return skb->len + x;
}

SEC("socket")
int uses_hidden(struct __sk_buff *skb)
{
	return helper(skb, 3);
}

char LICENSE[] SEC("license") = "GPL";
"""


UNRESOLVABLE = r"""
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct___gone {
	int rawbpf_no_such_field;
} __attribute__((preserve_access_index));

__u32 out;

SEC("tp/syscalls/sys_enter_getppid")
int reads_missing(void *ctx)
{
	struct task_struct___gone *t = (void *)bpf_get_current_task();
	out = BPF_CORE_READ(t, rawbpf_no_such_field);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    tmp = tmp_path_factory.mktemp("sections")
    clang, gcc = shutil.which("clang"), shutil.which("gcc")
    if clang is None or gcc is None:
        pytest.fail("clang and gcc are needed for this test")
    for name, source in (("lazy", SOURCE), ("unresolvable", UNRESOLVABLE)):
        (tmp / f"{name}.c").write_text(source)
        cmd = [clang, "-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-D__TARGET_ARCH_x86",
               f"-I{INCLUDE}", "-idirafter", f"/usr/include/{platform.machine()}-linux-gnu",
               "-c", str(tmp / f"{name}.c"), "-o", str(tmp / f"{name}.o")]
        subprocess.run(cmd, check=True)
    subprocess.run(
        [
            gcc,
            "-O1",
            "-Wall",
            "-Werror",
            "-o",
            str(tmp / "libbpf_loader"),
            str(ROOT / "tools" / "libbpf_loader.c"),
            "-lbpf",
        ],
        check=True,
    )
    return tmp / "lazy.o", tmp / "libbpf_loader"


def test_question_mark_sections_and_iter_match_libbpf(built: tuple, pin_dir: Path) -> None:
    obj, loader = built
    spec = load_spec(obj)
    assert not spec.programs["optional"].autoload and spec.programs["always"].autoload
    r = subprocess.run([str(loader), str(obj), str(pin_dir)], capture_output=True, text=True,
                       timeout=patience(60))
    assert r.returncode == 0, r.stderr
    want = {line.split()[0]: line.split()[1] for line in r.stdout.splitlines()}
    assert set(want) == {"always", "count_tasks", "uses_hidden"}  # libbpf leaves "?socket" out too
    with Collection.load(spec) as c:
        assert {n: p.info().tag.hex() for n, p in c.programs.items()} == want
        assert c.programs["uses_hidden"].test_run(bytes(64)).retval == 50 + 3
    with Collection.load(spec, programs=["optional"]) as c:
        assert c.programs["optional"].test_run(bytes(64)).retval == 2


@pytest.mark.parametrize("kernel_core", [True, False], ids=["kernel-core", "user-core"])
def test_failed_core_relocation_names_type_field_and_line(built: tuple, kernel_core: bool) -> None:
    obj = built[0].parent / "unresolvable.o"
    with pytest.raises(RelocationError) as info:
        Collection.load(load_spec(obj), kernel_core=kernel_core)
    msg = str(info.value)
    assert msg.startswith("object 'unresolvable': section 'tp/syscalls/sys_enter_getppid': "
                          "program 'reads_missing': CO-RE relocation")
    assert "task_struct___gone" in msg and "rawbpf_no_such_field" in msg
    assert re.search(r"unresolvable\.c:1[56]: ", msg) and "195896080" not in msg and "\n" not in msg
