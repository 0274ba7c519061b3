"""The monitor is recognised by its content, not its file name; other objects' argv-like fields are redacted
and said to be."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from rawbpf.cli.monitor_options import maybe_run_monitor, object_is_monitor
from rawbpf.daemon import argv_like_fields, argv_redactor
from rawbpf.elf import load_spec
from rawbpf.errors import ConfigError
from rawbpf.monitor import is_monitor
from rawbpf.records import ring_decoder

ROOT = Path(__file__).resolve().parents[2]
MONITOR = ROOT / "programs" / "claude_monitor.o"
KEY = "sk-ant-api03-" + "A" * 40


def test_a_renamed_copy_is_the_monitor(tmp_path: Path) -> None:
    """A versioned copy used to run in generic mode: no rules, no seeding, argv logged unredacted."""
    copy = tmp_path / "claude_monitor-2.1.o"
    shutil.copy(MONITOR, copy)
    assert object_is_monitor(str(copy)) and is_monitor(load_spec(copy))


def test_a_file_merely_named_so_is_not(tmp_path: Path) -> None:
    impostor = tmp_path / "claude_monitor.o"
    shutil.copy(ROOT / "tests" / "data" / "maps_btf.o", impostor)
    assert not object_is_monitor(str(impostor))
    with pytest.raises(ConfigError, match="--only-endpoints only apply to the claude_monitor object"):
        maybe_run_monitor(str(impostor), {"only_endpoints": True})


def test_other_objects_have_argv_like_fields_redacted(caplog: pytest.LogCaptureFixture) -> None:
    dec = ring_decoder(load_spec(MONITOR).btf, "events")
    assert argv_like_fields(dec) == ["argv", "env"]
    with caplog.at_level(logging.WARNING, logger="rawbpf"):
        redact = argv_redactor(dec, "events")
    assert redact is not None
    assert [r.message for r in caplog.records] == [
        "ring events: secrets in argv, env are replaced by [REDACTED] (argv-like fields)"]
    rec = {"type": "exec", "argv": f"curl\0-H\0x-api-key: {KEY}\0--token\0abc\0".encode(), "env": "PATH=/bin"}
    out = redact(dict(rec))
    assert out is not None
    assert out["argv"] == b"curl\0-H\0x-api-key: [REDACTED]\0--token\0[REDACTED]\0"
    assert out["redacted"] == ["argv"] and out["env"] == "PATH=/bin"
    clean = {"type": "exec", "argv": b"ls\0-l\0"}
    assert redact(dict(clean)) == clean  # nothing to hide: unchanged, no mark
    flood = ring_decoder(load_spec(ROOT / "tests" / "data" / "ringbuf" / "flood.o").btf, "rb")
    assert argv_like_fields(flood) == [] and argv_redactor(flood, "rb") is None
