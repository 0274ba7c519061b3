"""Every record reaches real servers, parsed: FluentServer (Forward, PackedForward with chunk acks, gzip,
shared-key handshake, TLS) and rsyslogd (RFC 5424 over TCP with octet counting, over TLS, and RELP)."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from tests.ship.servers import (
    Fluent,
    Rsyslog,
    ShipProcess,
    all_seqs,
    make_cert,
    ship_status,
    wait_for,
    write_log,
)


def _by_seq(entries: List[Dict[str, Any]]) -> Dict[int, Dict[str, Any]]:
    return {e["record"]["seq"]: e for e in entries}


def _drain(log_dir: Path, url: str, timeout: float = 60) -> str:
    with ShipProcess(log_dir, [url], extra=["--drain"]) as ship:
        assert ship.wait(timeout) == 0, ship.text()
        return ship.text()


def _check_forward(entries: List[Dict[str, Any]], log_dir: Path) -> None:
    expected = all_seqs(log_dir)
    seqs = [e["record"]["seq"] for e in entries]
    assert sorted(seqs) == expected, "every record exactly once"
    for e in entries:
        rec = e["record"]
        assert e["tag"] == f"rawbpf.{rec['type']}"
        sec, nsec = e["time"]
        assert abs(sec * 10**9 + nsec - rec["ts"]) < 10**4  # JSON loses the last digits of ts, not EventTime
        assert rec["host"]


def test_forward_every_record_once_with_acks(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    write_log(log_dir, 6000, max_bytes=100_000, backups=100)
    with Fluent(tmp_path) as fluent:
        out = _drain(log_dir, f"forward://127.0.0.1:{fluent.port}?batch=500")
        entries = fluent.entries()
    _check_forward(entries, log_dir)
    assert "resent 0, unshipped 0" in out
    exec_rec = next(e["record"] for e in entries if e["record"]["type"] == "exec")
    assert exec_rec["argv"][3] == 'quote"]\\'
    exit_rec = next(e["record"] for e in entries if e["record"]["type"] == "exit")
    assert exit_rec["raw"] == "00ff"  # msgpack bin arrived as bytes
    # the cursor names the last record and the file it is in
    st = ship_status(log_dir)
    assert st[0]["cursor"]["seq"] == max(all_seqs(log_dir)) and st[0]["behind"] == 0
    assert st[0]["cursor"]["file"] == sorted(p.name for p in log_dir.glob("*.mlog"))[-1]
    assert not st[0]["running"]


def test_forward_gzip(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    write_log(log_dir, 3000)
    with Fluent(tmp_path) as fluent:
        _drain(log_dir, f"forward://127.0.0.1:{fluent.port}?gzip=1&batch=700")
        _check_forward(fluent.entries(), log_dir)


def test_forward_without_acks_is_judged_by_tcp(tmp_path: Path) -> None:
    """ack=0: no chunk ids are sent, the server sends nothing back; a batch counts once the peer's TCP stack
    has all of it."""
    log_dir = tmp_path / "log"
    write_log(log_dir, 2000)
    with Fluent(tmp_path) as fluent:
        _drain(log_dir, f"forward://127.0.0.1:{fluent.port}?ack=0&batch=300")
        wait_for(lambda: len(fluent.entries()) >= len(all_seqs(log_dir)), 20, "every entry written")
        _check_forward(fluent.entries(), log_dir)


def test_forward_shared_key_handshake(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    write_log(log_dir, 500)
    key = tmp_path / "key"
    key.write_text("s3cret-shared\n")
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-key\n")
    security = {"serverHostname": "fluent-test-server", "sharedKeyFile": str(key)}
    with Fluent(tmp_path, security=security) as fluent:
        url = f"forward://127.0.0.1:{fluent.port}"
        with ShipProcess(log_dir, [url + f"?shared_key_file={wrong}"]) as ship:
            st = wait_for(lambda: [d for d in ship_status(log_dir) if d.get("last_error")], 20, "a refusal")
            assert "shared key mismatch" in st[0]["last_error"], st
            assert not fluent.entries()
            ship.stop()
        _drain(log_dir, url + f"?shared_key_file={key}")
        _check_forward(fluent.entries(), log_dir)


def test_forward_tls(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    write_log(log_dir, 1000)
    cert = make_cert(tmp_path)
    with Fluent(tmp_path, tls=cert) as fluent:
        _drain(log_dir, f"forward+tls://127.0.0.1:{fluent.port}?ca={cert['cert']}")
        _check_forward(fluent.entries(), log_dir)


def _check_syslog(messages: List[Dict[str, Any]], log_dir: Path) -> None:
    from rawbpf.logfile import LogReader

    with LogReader(str(log_dir)) as r:
        records = {rec["seq"]: rec for rec in r.records()}
    got = collections.Counter()
    for m in messages:
        rec = json.loads(m["msg"])
        seq = rec["seq"]
        got[seq] += 1
        orig = records[seq]
        assert rec["type"] == orig["type"] and rec.get("pid") == orig.get("pid")
        assert m["msgid"] == orig["type"] and m["app"] == "rawbpf" and m["procid"] == "-"
        assert m["pri"] == str(16 * 8 + 6)
        assert m["sd"].startswith(f'[rawbpf@32473 seq="{seq}" type="{orig["type"]}"')
        if "comm" in orig:
            assert f'comm="{orig["comm"]}"' in m["sd"]
        assert m["timestamp"].endswith("Z") or m["timestamp"][-6] in "+-"
        if orig["type"] == "exec":
            assert rec["argv"] == orig["argv"]
    assert sorted(got) == sorted(records) and max(got.values()) == 1


@pytest.mark.parametrize("scheme", ["syslog+tcp", "relp"])
def test_rsyslog_every_record_parsed(tmp_path: Path, scheme: str) -> None:
    log_dir = tmp_path / "log"
    write_log(log_dir, 3000, max_bytes=100_000, backups=100)
    with Rsyslog(tmp_path) as rs:
        port = rs.tcp_port if scheme == "syslog+tcp" else rs.relp_port
        _drain(log_dir, f"{scheme}://127.0.0.1:{port}?batch=400")
        n = len(all_seqs(log_dir))
        msgs = wait_for(lambda: (lambda m: m if len(m) >= n else None)(rs.messages()), 20, "rsyslog output")
    _check_syslog(msgs, log_dir)


def test_rsyslog_tls(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    write_log(log_dir, 1000)
    cert = make_cert(tmp_path)
    with Rsyslog(tmp_path, tls=cert, relp=False) as rs:
        _drain(log_dir, f"syslog+tls://127.0.0.1:{rs.tcp_port}?ca={cert['cert']}")
        n = len(all_seqs(log_dir))
        msgs = wait_for(lambda: (lambda m: m if len(m) >= n else None)(rs.messages()), 20, "rsyslog output")
    _check_syslog(msgs, log_dir)


def test_follows_a_live_log_to_two_destinations(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    write_log(log_dir, 100)
    with Fluent(tmp_path) as fluent, Rsyslog(tmp_path, relp=False) as rs:
        urls = [f"forward://127.0.0.1:{fluent.port}", f"syslog+tcp://127.0.0.1:{rs.tcp_port}"]
        with ShipProcess(log_dir, urls) as ship:
            for k in range(5):  # new writers: new files, rotation while shipping
                write_log(log_dir, 400, max_bytes=20_000, backups=50, start=100 + k * 400)
            n = len(all_seqs(log_dir))
            wait_for(lambda: len(fluent.entries()) >= n and len(rs.messages()) >= n, 30, "both destinations")
            st = wait_for(lambda: (lambda s: s if all(d.get("behind") == 0 and d["connected"] for d in s)
                                   else None)(ship_status(log_dir)), 10, "connected, cursors at the end")
            assert all(d["running"] and not d["last_error"] for d in st), st
            shown = subprocess.run([sys.executable, "-m", "rawbpf", "status", "--log-dir", str(log_dir)],
                                   capture_output=True, text=True)
            assert shown.returncode == 0, shown.stderr
            for u in urls:
                assert f"{u}: connected; cursor {n - 1} (rawbpf-" in shown.stdout, shown.stdout
            assert shown.stdout.count("behind 0") == 2 and "resent 0, unshipped 0" in shown.stdout
            ship.stop()
            assert ship.proc is not None and ship.proc.returncode == 0, ship.text()
        _check_forward(fluent.entries(), log_dir)
        _check_syslog(rs.messages(), log_dir)
