"""Real log servers on loopback for the ship tests and benchmarks, and the ``rawbpf ship`` process.

* :class:`Fluent`: ``FluentServer`` of the npm package ``@fluent-org/logger`` run with node
  (``tests/servers``, installed by ``make test-servers``), writing every entry it receives to a file.
* :class:`Rsyslog`: Debian's ``rsyslogd`` with a private configuration: imtcp (octet counting; TLS through
  the ``ossl`` driver) and imrelp inputs on loopback, every message written as one JSON line of its parsed
  RFC 5424 fields.
* :class:`Blackhole`: accepts connections and reads everything, never answers (a destination that never
  acknowledges).
* :class:`ShipProcess`: ``python -m rawbpf ship`` as a child process.

Everything started here is stopped by its own pid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[2]
SERVERS = ROOT / "tests" / "servers"
FLUENT_JS = SERVERS / "fluent_server.js"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(pred: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def _stop(proc: Optional[subprocess.Popen], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)


def make_cert(directory: Path) -> Dict[str, str]:
    """A throwaway self-signed certificate for 127.0.0.1 / localhost (openssl)."""
    key, cert = directory / "server.key", directory / "server.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return {"key": str(key), "cert": str(cert)}


def node_ready() -> str:
    """Why the Fluent server cannot run ("" when it can)."""
    if shutil.which("node") is None:
        return "node is not installed (make deps)"
    if not (SERVERS / "node_modules" / "@fluent-org" / "logger").is_dir():
        return "tests/servers/node_modules is missing (make test-servers)"
    return ""


class Fluent:
    """A running FluentServer; ``entries()`` is what it received, in arrival order."""

    def __init__(self, work: Path, *, port: int = 0, tls: Optional[Dict[str, str]] = None,
                 security: Optional[Dict[str, Any]] = None, count_only: bool = False) -> None:
        why = node_ready()
        if why:
            raise AssertionError(why)
        self.out = work / f"fluent-{time.monotonic_ns()}.ndjson"
        opts: Dict[str, Any] = {"port": port, "countOnly": count_only}
        if not count_only:
            opts["out"] = str(self.out)
        if tls:
            opts["tls"] = tls
        if security:
            opts["security"] = security
        self.proc: Optional[subprocess.Popen] = subprocess.Popen(
            ["node", str(FLUENT_JS), json.dumps(opts)], cwd=SERVERS, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("listening "):
            self.stop()
            raise AssertionError(f"fluent server did not start: {line!r}")
        self.port = int(line.split()[1])

    def entries(self) -> List[Dict[str, Any]]:
        if not self.out.exists():
            return []
        out = []
        for line in self.out.read_text().splitlines():
            if line.endswith("}"):
                out.append(json.loads(line))
        return out

    def stop(self, sig: int = signal.SIGTERM) -> None:
        _stop(self.proc, sig)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def __enter__(self) -> Fluent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


RSYSLOG_CONF = """\
global(workDirectory="{work}" maxMessageSize="256k" net.enableDNS="off"{tls_global})
module(load="imtcp"{tls_module})
input(type="imtcp" address="127.0.0.1" port="{tcp_port}" ruleset="ship")
{relp}
template(name="fields" type="list" option.jsonf="on") {{
  property(outname="pri" name="pri" format="jsonf")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}}
ruleset(name="ship") {{
  action(type="omfile" file="{out}" template="fields" asyncWriting="off")
}}
"""


class Rsyslog:
    """A private rsyslogd: ``tcp_port`` (octet-counted syslog, TLS with ``tls``) and ``relp_port``;
    ``messages()`` is what it wrote, one dict of RFC 5424 fields per message."""

    def __init__(self, work: Path, *, tls: Optional[Dict[str, str]] = None, relp: bool = True,
                 tcp_port: int = 0, relp_port: int = 0) -> None:
        if shutil.which("rsyslogd") is None and not Path("/usr/sbin/rsyslogd").exists():
            raise AssertionError("rsyslogd is not installed (make deps)")
        self.dir = work / f"rsyslog-{time.monotonic_ns()}"
        self.dir.mkdir()
        self.out = self.dir / "messages.json"
        self.tcp_port = tcp_port or free_port()
        self.relp_port = (relp_port or free_port()) if relp else 0
        tls_global = tls_module = ""
        if tls:
            tls_global = (f' defaultNetstreamDriver="ossl" defaultNetstreamDriverCAFile="{tls["cert"]}"'
                          f' defaultNetstreamDriverCertFile="{tls["cert"]}"'
                          f' defaultNetstreamDriverKeyFile="{tls["key"]}"')
            tls_module = ' streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon"'
        relp_conf = (f'module(load="imrelp")\ninput(type="imrelp" address="127.0.0.1" '
                     f'port="{self.relp_port}" ruleset="ship")' if relp else "")
        conf = self.dir / "rsyslog.conf"
        conf.write_text(RSYSLOG_CONF.format(work=self.dir, tls_global=tls_global, tls_module=tls_module,
                                            tcp_port=self.tcp_port, relp=relp_conf, out=self.out))
        self.log = open(self.dir / "rsyslogd.out", "w")  # noqa: SIM115 (closed in stop)
        self.proc: Optional[subprocess.Popen] = subprocess.Popen(
            ["rsyslogd", "-n", "-f", str(conf), "-i", str(self.dir / "rsyslogd.pid")],
            stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        ports = [self.tcp_port] + ([self.relp_port] if relp else [])
        try:
            wait_for(lambda: all(_listening(p) for p in ports), 15, "rsyslogd to listen")
        except AssertionError:
            self.stop()
            why = (self.dir / "rsyslogd.out").read_text()[-500:]
            raise AssertionError(f"rsyslogd did not start: {why}") from None

    def messages(self) -> List[Dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.endswith("}")]

    def stop(self) -> None:
        _stop(self.proc)
        self.log.close()

    def __enter__(self) -> Rsyslog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _listening(port: int) -> bool:
    with open("/proc/net/tcp") as f:
        lines = f.read().splitlines()[1:]
    want = f"0100007F:{port:04X}"
    return any(ln.split()[1] == want and ln.split()[3] == "0A" for ln in lines)


class Blackhole:
    """Listens on ``port``, accepts, reads and discards everything, never sends a byte."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.received = 0
        self.connections = 0
        self._conns: List[socket.socket] = []
        self._stop = threading.Event()
        self.read = True
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import select

        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
                self._conns.append(c)
                self.connections += 1
            except OSError:
                pass
            if self.read and self._conns:
                r, _, _ = select.select(self._conns, [], [], 0.05)
                for c in r:
                    try:
                        data = c.recv(1 << 16)
                    except OSError:
                        data = b""
                    self.received += len(data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for c in self._conns:
            c.close()
        self.sock.close()

    def __enter__(self) -> Blackhole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ShipProcess:
    """``rawbpf ship --to URL… --log-dir D`` in a child process."""

    def __init__(self, log_dir: Path, urls: Sequence[str], *, extra: Iterable[str] = (),
                 env: Optional[Dict[str, str]] = None) -> None:
        cmd = [sys.executable, "-m", "rawbpf", "ship", "--log-dir", str(log_dir)]
        for u in urls:
            cmd += ["--to", u]
        cmd += list(extra)
        self.log_dir = log_dir
        self.output = log_dir.parent / f"ship-{time.monotonic_ns()}.out"
        self._out = open(self.output, "w")  # noqa: SIM115 (closed in __exit__)
        self.proc: Optional[subprocess.Popen] = subprocess.Popen(
            cmd, stdout=self._out, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            why = self.text()[-800:]
            raise AssertionError(f"rawbpf ship did not finish in {timeout:g} s: {why}") from None

    def text(self) -> str:
        self._out.flush()
        return self.output.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        _stop(self.proc, sig, timeout=20)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def __enter__(self) -> ShipProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._out.close()


def ship_status(log_dir: Path) -> List[Dict[str, Any]]:
    from rawbpf.ship.status import collect

    return collect(str(log_dir))


def cursor_seq(log_dir: Path) -> Dict[str, Optional[int]]:
    from rawbpf.ship.cursor import cursor_files, read_cursor

    out = {}
    for p in cursor_files(str(log_dir)):
        c = read_cursor(p)
        out[c.url if c else p] = c.seq if c else None
    return out


def write_log(log_dir: Path, n: int, *, max_bytes: int = 10_000_000, backups: int = 5, start: int = 0,
              types: Sequence[str] = ("exec", "connect", "exit")) -> List[int]:
    """Append ``n`` monitor-like records to the log in ``log_dir``; returns every seq now in the stream
    (headers included)."""
    from rawbpf.logfile import LogWriter

    seqs = []
    with LogWriter(str(log_dir), max_bytes=max_bytes, backups=backups) as w:
        for i in range(start, start + n):
            t = types[i % len(types)]
            seqs.append(w.write(record(i, t)))
    return seqs


def record(i: int, t: str) -> Dict[str, Any]:
    r: Dict[str, Any] = {"type": t, "pid": 1000 + i % 5000, "tid": 1000 + i % 5000, "ppid": 1, "uid": 0,
                         "comm": "bash", "root_pid": 999}
    if t == "exec":
        r.update(filename="/usr/bin/git", argv=["git", "status", f"--n={i}", 'quote"]\\'],
                 argv_truncated=False)
    elif t == "connect":
        r.update(family="inet", addr="160.79.104.10", port=443, ret=0, endpoint="anthropic-api")
    else:
        r.update(exit_code=0, signal=0, core_dumped=False, duration_ns=12345, raw=b"\x00\xff")
    return r


def all_seqs(log_dir: Path) -> List[int]:
    from rawbpf.logfile import LogReader

    with LogReader(str(log_dir)) as r:
        return [rec["seq"] for rec in r.records()]
