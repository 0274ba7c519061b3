"""A real resolver for the monitor's DNS tests: Debian's dnsmasq serving a test zone on 127.0.0.1 inside a
network namespace the test creates, with the namespace's own resolv.conf (``ip netns exec`` puts it in
place), so the host's resolver is never asked."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List

import pytest
from patience import patience


def need(tool: str) -> str:
    """The path of a tool the test needs; a skip (a failure under RAWBPF_REQUIRE_KERNEL=1) without it."""
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if os.path.exists(f"/usr/sbin/{tool}") else None)
    if path is None:
        if os.environ.get("RAWBPF_REQUIRE_KERNEL") == "1":
            pytest.fail(f"{tool} is not installed (make deps installs it)")
        pytest.skip(f"{tool} is not installed")
    return path


@contextmanager
def dnsmasq_netns(tmp: Path, records: List[str]) -> Iterator[str]:
    """A network namespace (its name is yielded) with lo up, its own resolv.conf, and dnsmasq answering
    the ``test.`` zone from ``records`` (dnsmasq configuration lines); unknown names there are NXDOMAIN."""
    ip, dnsmasq = need("ip"), need("dnsmasq")
    name = f"rawbpf-dns-{uuid.uuid4().hex[:8]}"
    etc = Path("/etc/netns") / name
    subprocess.run([ip, "netns", "add", name], check=True)
    proc = None
    try:
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions attempts:1 timeout:2\n")
        subprocess.run([ip, "-n", name, "link", "set", "lo", "up"], check=True)
        conf = tmp / "dnsmasq.conf"
        conf.write_text("\n".join([
            "no-resolv", "no-hosts", "no-poll", "bind-interfaces", "listen-address=127.0.0.1",
            "local=/test/",  # unknown names under test. are NXDOMAIN, never forwarded
            *records, "",
        ]))
        proc = subprocess.Popen([ip, "netns", "exec", name, dnsmasq, "--keep-in-foreground",
                                 f"--conf-file={conf}", f"--pid-file={tmp / 'dnsmasq.pid'}", "--user=root"],
                                stderr=subprocess.PIPE)
        deadline = time.monotonic() + patience(10)
        while True:  # ready when it answers
            r = subprocess.run([ip, "netns", "exec", name, sys.executable, "-c",
                                "import socket; socket.getaddrinfo('ready.test', 1, socket.AF_INET)"],
                               capture_output=True)
            if r.returncode == 0:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"dnsmasq did not come up: {err or r.stderr.decode()}")
            time.sleep(0.1)
        yield name
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(patience(10))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        subprocess.run([ip, "netns", "delete", name], check=False)
        shutil.rmtree(etc, ignore_errors=True)
