"""``rawbpf ship`` refuses bad input in one line with exit status 1, before anything starts; one shipper per
destination; a TLS server the CA does not vouch for is refused by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.ship.servers import Fluent, ShipProcess, free_port, make_cert, ship_status, wait_for, write_log

ROOT = Path(__file__).resolve().parents[2]


def _ship(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rawbpf", "ship", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


@pytest.mark.parametrize("args, says", [
    (["--to", "http://h:1"], "unknown scheme 'http'"),
    (["--to", "forward://h:1?bogus=1"], "unknown option 'bogus'"),
    (["--to", "forward://127.0.0.1:1?shared_key_file=/nonexistent/key"], "shared_key_file /nonexistent/key"),
    (["--to", "forward://127.0.0.1:1", "--to", "forward://127.0.0.1:1?gzip=1"], "given twice"),
    (["--to", "forward+tls://127.0.0.1:1?ca=/nonexistent/ca.pem"], "tls setup"),
])
def test_bad_input_is_one_line(tmp_path: Path, args: list, says: str) -> None:
    write_log(tmp_path / "log", 1)
    r = _ship("--log-dir", str(tmp_path / "log"), *args)
    assert r.returncode == 1, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rawbpf: ") and says in lines[0], r.stderr
    assert not list((tmp_path / "log").glob("ship-*.cursor"))


def test_missing_log_dir(tmp_path: Path) -> None:
    r = _ship("--log-dir", str(tmp_path / "nope"), "--to", "forward://127.0.0.1:1")
    assert r.returncode == 1 and "does not exist" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_one_shipper_per_destination(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    write_log(log_dir, 10)
    url = f"forward://127.0.0.1:{free_port()}"
    with ShipProcess(log_dir, [url]) as first:
        wait_for(lambda: ship_status(log_dir), 20, "the first shipper's status")
        r = _ship("--log-dir", str(log_dir), "--to", url)
        assert r.returncode == 1 and f"already shipped by pid {first.proc.pid}" in r.stderr, r.stderr


def test_tls_server_not_vouched_for(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    write_log(log_dir, 10)
    cert = make_cert(tmp_path)
    with Fluent(tmp_path, tls=cert) as fluent, \
            ShipProcess(log_dir, [f"forward+tls://127.0.0.1:{fluent.port}"]):  # the system CAs only
        st = wait_for(lambda: [d for d in ship_status(log_dir) if d.get("last_error")], 20, "a refusal")
        assert "tls: certificate verify failed: self-signed certificate" in st[0]["last_error"], st
        assert not fluent.entries()
