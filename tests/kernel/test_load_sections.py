"""Conventions beyond the corpus, checked against libbpf: ``SEC("?…")`` (not loaded by default), ``iter/``
programs (attach BTF id of ``bpf_iter_<target>``) and hidden global subprograms (verified as static).
Sources are compiled here with clang."""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from rawbpf.collection import Collection
from rawbpf.elf import load_spec

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


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    tmp = tmp_path_factory.mktemp("sections")
    clang, gcc = shutil.which("clang"), shutil.which("gcc")
    if clang is None or gcc is None:
        pytest.fail("clang and gcc are needed for this test")
    (tmp / "lazy.c").write_text(SOURCE)
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
            f"/usr/include/{platform.machine()}-linux-gnu",
            "-c",
            str(tmp / "lazy.c"),
            "-o",
            str(tmp / "lazy.o"),
        ],
        check=True,
    )
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
    r = subprocess.run([str(loader), str(obj), str(pin_dir)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    want = {line.split()[0]: line.split()[1] for line in r.stdout.splitlines()}
    assert set(want) == {"always", "count_tasks", "uses_hidden"}  # libbpf leaves "?socket" out too
    with Collection.load(spec) as c:
        assert {n: p.info().tag.hex() for n, p in c.programs.items()} == want
        assert c.programs["uses_hidden"].test_run(bytes(64)).retval == 50 + 3
    with Collection.load(spec, programs=["optional"]) as c:
        assert c.programs["optional"].test_run(bytes(64)).retval == 2
