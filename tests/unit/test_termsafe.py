"""Terminal safety: no text output path prints a control character a file, a log or a kernel put there."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from rawbpf.cli import cli
from rawbpf.logfile import LogWriter
from rawbpf.monitor.status import format_text
from rawbpf.termsafe import escape, escape_json

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
# what must never reach the terminal raw: C0 but newline, DEL, C1, bidi controls, lone surrogates
DANGEROUS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
OSC_TITLE = "\x1b]0;owned\x07"
HOSTILE = ["sh", "-c", f"echo {OSC_TITLE}\x1b[2J\x1b[1A\rfake\x9b31m\x7f\u202eevil\x08", "\x00tail"]


def test_escape_keeps_printable_text_and_makes_the_rest_visible() -> None:
    assert escape("plain text, ünïcödé 名前 ok") == "plain text, ünïcödé 名前 ok"
    assert escape(OSC_TITLE) == "\\x1b]0;owned\\x07"
    assert escape("a\tb\nc\r") == "a\\tb\\nc\\r"
    assert escape("\x7f\x9b\x85") == "\\x7f\\x9b\\x85"
    assert escape("right-to-left \u202e override, \u200b zero width") == (
        "right-to-left \\u202e override, \\u200b zero width")
    assert escape(b"ok\xff\xc3(") == "ok\\xff\\xc3("  # invalid UTF-8 byte by byte
    assert escape("a\\x1b") == "a\\\\x1b"  # a literal backslash cannot pass for an escape
    assert escape("a\\b\x1b", backslash=False) == "a\\b\\x1b"


@given(st.text())
def test_escape_never_lets_a_control_character_through(text: str) -> None:
    out = escape(text)
    assert not DANGEROUS.search(out) and "\n" not in out


@given(st.text())
def test_escape_json_stays_exact(text: str) -> None:
    line = escape_json(json.dumps({"argv": [text]}, ensure_ascii=False))
    assert json.loads(line) == {"argv": [text]}
    assert not DANGEROUS.search(line)


def _hostile_log(d: Path) -> None:
    with LogWriter(str(d)) as w:
        w.write({"type": "exec", "pid": 7, "comm": "cl\x1b[31maude", "argv": HOSTILE,
                 "filename": "/tmp/\x9b2J", f"k\x1b{OSC_TITLE}": 1, "d": {"x\x07": "\x1b"}})


def test_tail_text_escapes_what_argv_carries(tmp_path: Path) -> None:
    _hostile_log(tmp_path)
    r = CliRunner().invoke(cli, ["tail", "--log-dir", str(tmp_path)], catch_exceptions=False)
    assert r.exit_code == 0
    out = r.stdout
    assert out.count("\n") == 1 and not DANGEROUS.search(out), repr(out)
    assert "\\x1b]0;owned\\x07" in out and "\\x9b31m" in out and "\\u202eevil" in out
    assert "7           cl\\x1b[31maude" in out and "\\x00tail" in out


def test_tail_json_is_exact_and_safe(tmp_path: Path) -> None:
    _hostile_log(tmp_path)
    r = CliRunner().invoke(cli, ["tail", "--log-dir", str(tmp_path), "--json"], catch_exceptions=False)
    assert r.exit_code == 0 and not DANGEROUS.search(r.stdout)
    rec = json.loads(r.stdout)
    assert rec["argv"] == HOSTILE and rec["comm"] == "cl\x1b[31maude" and rec["d"] == {"x\x07": "\x1b"}


def test_status_text_escapes_names_from_files_and_kernels() -> None:
    text = format_text({
        "object": "claude\x1b]0;x\x07", "pid": 1, "started": 0, "now": 0, "log_dir": "/l\x9b",
        "pin_dir": "/p",
        "log": {"current": "/l/f\x1bx", "files": []},
        "programs": {"p\x1b[2J": {"attached": True, "run_cnt": 1, "avg_ns": 1.0}},
        "counters": {"kinds": {"k\x07": {"seen": 1, "tracked": 1, "emitted": 1, "lost": 0}}},
    })
    assert not DANGEROUS.search(text.replace("\n", "")), repr(text)
    assert "claude\\x1b]0;x\\x07: running" in text and "p\\x1b[2J" in text


def test_inspect_and_disasm_escape_names_from_the_object(tmp_path: Path) -> None:
    # the same length in every string table, so the object stays well formed: a map and a program renamed
    data = (DATA / "maps_btf.o").read_bytes()
    assert data.count(b"pinned_hash\x00") and data.count(b"use_maps\x00")
    data = data.replace(b"pinned_hash\x00", b"pin\x1b]0;x\x07hh\x00").replace(
        b"use_maps\x00", b"use\x1b[2Jx\x00")
    obj = tmp_path / "hostile.o"
    obj.write_bytes(data)
    for args in (["inspect", str(obj)], ["disasm", str(obj)]):
        r = subprocess.run([sys.executable, "-m", "rawbpf", *args], capture_output=True, cwd=ROOT, timeout=60)
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode("utf-8", "surrogateescape")
        assert not DANGEROUS.search(out), out
    assert "use\\x1b[2Jx" in out
    r = subprocess.run([sys.executable, "-m", "rawbpf", "inspect", "--json", str(obj)], capture_output=True,
                       cwd=ROOT, timeout=60)
    names = {m["name"] for m in json.loads(r.stdout)["maps"]}
    assert "pin\x1b]0;x\x07hh" in names


def test_error_lines_escape_names_from_the_object(tmp_path: Path) -> None:
    obj = tmp_path / "hostile.o"
    obj.write_bytes((DATA / "maps_btf.o").read_bytes().replace(b"use_maps\x00", b"use\x1b[2Jx\x00"))
    r = subprocess.run([sys.executable, "-m", "rawbpf", "disasm", str(obj), "nope\x1b]0;x\x07"],
                       capture_output=True, cwd=ROOT, timeout=60)
    err = r.stderr.decode("utf-8", "surrogateescape")
    assert r.returncode == 1 and err.count("\n") == 1 and not DANGEROUS.search(err), err
    assert "nope\\x1b]0;x\\x07" in err and "use\\x1b[2Jx" in err


def test_a_string_that_is_not_utf8_is_shown_byte_by_byte(tmp_path: Path) -> None:
    import msgpack

    with LogWriter(str(tmp_path)) as w:
        w.write({"type": "t", "i": 0})
    f = next(p for p in tmp_path.iterdir() if p.name.endswith(".mlog"))
    bad = b"\x84\xa3seq\x02\xa2ts\x01\xa4type\xa1t\xa4argv\xa5ab\xff\x1b\xfe"  # argv: a str with bytes ff, fe
    with open(f, "ab") as out:
        out.write(bad + msgpack.packb({"seq": 3, "ts": 1, "type": "t", "i": 2}))
    r = CliRunner().invoke(cli, ["tail", "--log-dir", str(tmp_path)], catch_exceptions=False)
    assert r.exit_code == 0 and not DANGEROUS.search(r.stdout), r.stdout
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and "argv=ab\\xff\\x1b\\xfe" in lines[1] and "i=2" in lines[2]
    r = CliRunner().invoke(cli, ["tail", "--log-dir", str(tmp_path), "--json"], catch_exceptions=False)
    assert json.loads(r.stdout.splitlines()[1])["argv"] == "ab\udcff\x1b\udcfe"
