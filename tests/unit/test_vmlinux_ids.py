"""vmlinux type ids remembered for the boot: reused within it, ignored from another boot, another BTF or an
untrusted file, never remembered when absent."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Tuple

import pytest

from rawbpf import vmlinux_ids


class Finder:
    def __init__(self, ids: Dict[str, int]) -> None:
        self.ids = ids
        self.calls: List[Tuple[str, str]] = []

    def __call__(self, name: str, kind: str) -> int:
        self.calls.append((name, kind))
        return self.ids.get(name, 0)


@pytest.fixture()
def env(tmp_path: Path):  # type: ignore[no-untyped-def]
    btf = tmp_path / "vmlinux"
    btf.write_bytes(b"\0" * 100)
    boot = tmp_path / "boot_id"
    boot.write_text("boot-1\n")
    run = tmp_path / "run"
    vmlinux_ids._loaded.clear()

    def lookup(name: str, find: Finder, kind: str = "TYPEDEF") -> int:
        return vmlinux_ids.type_id(name, kind, str(btf), find, directory=str(run), boot_id_path=str(boot))

    yield SimpleNamespace(btf=btf, boot=boot, run=run, lookup=lookup)
    vmlinux_ids._loaded.clear()


def fresh_process() -> None:
    vmlinux_ids._loaded.clear()


def test_found_ids_are_reused_within_the_boot(env) -> None:  # type: ignore[no-untyped-def]
    run, lookup = env.run, env.lookup
    find = Finder({"btf_trace_a": 7, "btf_trace_b": 9})
    assert lookup("btf_trace_a", find) == 7 and lookup("btf_trace_b", find) == 9
    assert len(find.calls) == 2
    assert oct(os.stat(run).st_mode & 0o777) == "0o700"
    fresh_process()
    again = Finder({})
    assert lookup("btf_trace_a", again) == 7 and lookup("btf_trace_b", again) == 9
    assert again.calls == []
    assert lookup("btf_trace_a", again, kind="FUNC") == 0  # another kind is another name
    assert again.calls == [("btf_trace_a", "FUNC")]


def test_another_boot_or_btf_is_looked_up_again(env) -> None:  # type: ignore[no-untyped-def]
    btf, boot, lookup = env.btf, env.boot, env.lookup
    lookup("btf_trace_a", Finder({"btf_trace_a": 7}))
    fresh_process()
    boot.write_text("boot-2\n")
    find = Finder({"btf_trace_a": 8})
    assert lookup("btf_trace_a", find) == 8 and find.calls
    fresh_process()
    btf.write_bytes(b"\0" * 101)
    find = Finder({"btf_trace_a": 5})
    assert lookup("btf_trace_a", find) == 5 and find.calls
    fresh_process()
    assert lookup("btf_trace_a", Finder({})) == 5  # the new tag's id was kept


def test_absent_names_are_not_remembered(env) -> None:  # type: ignore[no-untyped-def]
    run, lookup = env.run, env.lookup
    find = Finder({})
    assert lookup("nope", find) == 0 and lookup("nope", find) == 0
    assert len(find.calls) == 2
    assert not (run / vmlinux_ids.FILE_NAME).exists()


def test_untrusted_or_corrupt_files_are_ignored(env) -> None:  # type: ignore[no-untyped-def]
    run, lookup = env.run, env.lookup
    lookup("btf_trace_a", Finder({"btf_trace_a": 7}))
    file = run / vmlinux_ids.FILE_NAME
    data = json.loads(file.read_text())
    data["ids"]["TYPEDEF:btf_trace_a"] = 99
    file.write_text(json.dumps(data))
    os.chmod(file, 0o666)  # anyone could have written it
    fresh_process()
    find = Finder({"btf_trace_a": 7})
    assert lookup("btf_trace_a", find) == 7 and find.calls
    os.chmod(file, 0o600)
    file.write_text("{not json")
    fresh_process()
    find = Finder({"btf_trace_a": 7})
    assert lookup("btf_trace_a", find) == 7 and find.calls
    fresh_process()
    assert lookup("btf_trace_a", Finder({})) == 7  # rewritten whole


def test_no_writable_directory_still_looks_up(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    btf, boot, run = env.btf, env.boot, env.run
    blocker = tmp_path / "file"
    blocker.write_text("")
    find = Finder({"btf_trace_a": 7})
    got = vmlinux_ids.type_id("btf_trace_a", "TYPEDEF", str(btf), find, directory=str(blocker / "sub"),
                              boot_id_path=str(boot))
    assert got == 7
    missing_boot = vmlinux_ids.type_id("btf_trace_a", "TYPEDEF", str(btf), find, directory=str(run),
                                       boot_id_path=str(tmp_path / "no-boot-id"))
    assert missing_boot == 7 and len(find.calls) == 2


def test_a_rewritten_btf_of_the_same_size_is_another_btf(env) -> None:  # type: ignore[no-untyped-def]
    assert env.lookup("btf_trace_a", Finder({"btf_trace_a": 7})) == 7
    fresh_process()
    env.btf.write_bytes(b"\1" * 100)  # same path and size, written again: its mtime says so
    st = os.stat(env.btf)
    os.utime(env.btf, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    other = Finder({"btf_trace_a": 8})
    assert env.lookup("btf_trace_a", other) == 8 and other.calls == [("btf_trace_a", "TYPEDEF")]
