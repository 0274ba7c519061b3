"""A kernel without a syscall the monitor watches (fchmodat2 before 6.6) loads the rest of the monitor."""

from __future__ import annotations

from pathlib import Path
from typing import List

import pytest

from rawbpf.elf import load_spec
from rawbpf.monitor.run import skip_missing_syscalls

MONITOR = Path(__file__).resolve().parents[2] / "programs" / "claude_monitor.o"


def _tracefs(root: Path, spec: object, missing: str) -> Path:
    for prog in spec.programs.values():  # type: ignore[attr-defined]
        if prog.section.startswith("tp/") and not prog.attach_to.endswith("/" + missing):
            d = root / "events" / prog.attach_to
            d.mkdir(parents=True, exist_ok=True)
            (d / "id").write_text("1\n")
    return root


def test_programs_of_missing_syscalls_are_not_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_spec(str(MONITOR))
    root = _tracefs(tmp_path, spec, "sys_exit_fchmodat2")
    monkeypatch.setattr("rawbpf.attach.tracefs_root", lambda what="": str(root))
    said: List[str] = []
    off = skip_missing_syscalls(spec, said.append)
    assert off == ["files_exit_fchmodat2"]
    assert not spec.programs["files_exit_fchmodat2"].autoload
    assert all(p.autoload for n, p in spec.programs.items() if n != "files_exit_fchmodat2")
    assert said == ["this kernel has no tracepoint for sys_exit_fchmodat2: 1 programs not loaded"]


def test_every_syscall_present_loads_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_spec(str(MONITOR))
    root = _tracefs(tmp_path, spec, "no such syscall")
    monkeypatch.setattr("rawbpf.attach.tracefs_root", lambda what="": str(root))
    said: List[str] = []
    assert skip_missing_syscalls(spec, said.append) == []
    assert said == []
    assert all(p.autoload for p in spec.programs.values())


def test_no_tracefs_leaves_the_error_to_attach(monkeypatch: pytest.MonkeyPatch) -> None:
    from rawbpf.errors import ConfigError

    def no_tracefs(what: str = "") -> str:
        raise ConfigError("tracefs is not mounted and could not be mounted")

    spec = load_spec(str(MONITOR))
    monkeypatch.setattr("rawbpf.attach.tracefs_root", no_tracefs)
    assert skip_missing_syscalls(spec, lambda line: None) == []
    assert all(p.autoload for p in spec.programs.values())
