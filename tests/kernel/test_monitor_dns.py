"""DNS and TLS server names in the real kernel, against a real resolver: Debian's dnsmasq serving a test zone
on 127.0.0.1 inside a network namespace this test creates (with the namespace's own resolv.conf, so the
host's resolver is never asked). A tracked process resolves names through glibc (A, AAAA, CNAME, NXDOMAIN),
sends raw UDP and TCP queries, connects by name, and makes a TLS handshake with a server name."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from dns_support import dnsmasq_netns, need
from monitor_support import ROOT, monitor
from patience import patience

WORK = ROOT / "tests" / "workload" / "net_work.py"


@pytest.fixture(scope="module")
def netns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Any]]:
    """A network namespace with lo up, its own resolv.conf, and dnsmasq answering the test zone."""
    ip, openssl = need("ip"), need("openssl")
    tmp = tmp_path_factory.mktemp("dns")
    records = ["host-record=ready.test,127.0.0.9", "host-record=api.test,127.0.0.2,::1",
               "cname=alias.test,api.test", "host-record=udp.test,127.0.0.5",
               "host-record=tcp.test,127.0.0.6"]
    with dnsmasq_netns(tmp, records) as name:
        subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-subj", "/CN=direct.test", "-days", "1", "-keyout", str(tmp / "key.pem"),
                        "-out", str(tmp / "cert.pem")], check=True, capture_output=True)
        yield {"name": name, "ip": ip, "tmp": tmp}


@pytest.fixture(scope="module")
def observed(netns: Dict[str, Any]) -> Dict[str, Any]:
    tmp: Path = netns["tmp"]
    bindir = tmp / "bin"
    bindir.mkdir()
    (bindir / "claude").symlink_to(WORK)
    (bindir / "python3").symlink_to(os.path.realpath(sys.executable))
    env = dict(os.environ, PATH=f"{bindir}:{os.environ.get('PATH', '')}")
    with monitor(endpoints={}) as mon:
        out = subprocess.run([netns["ip"], "netns", "exec", netns["name"], str(bindir / "claude"),
                              str(tmp / "cert.pem"), str(tmp / "key.pem")], env=env, capture_output=True,
                             text=True, timeout=patience(60))
        assert out.returncode == 0, out.stderr
        man = json.loads(out.stdout)
        mon.wait_for(lambda r: r["type"] == "exit" and r["pid"] == man["pid"])
        time.sleep(0.1)
        mon.drain()
        return {"manifest": man, "records": list(mon.records), "counters": mon.counters()}


def _of(observed: Dict[str, Any], kind: str) -> List[Dict[str, Any]]:
    pid = observed["manifest"]["pid"]
    return [r for r in observed["records"] if r["type"] == kind and r["pid"] == pid]


def test_the_workload_resolved_through_dnsmasq(observed: Dict[str, Any]) -> None:
    m = observed["manifest"]
    assert m["api"] == ["127.0.0.2", "::1"] and m["alias"] == ["127.0.0.2"]
    assert m["nope"] == socket.EAI_NONAME and m["udp_reply"] > 12 and m["tcp_reply"] > 12
    assert m["connected"] == "127.0.0.2"


def test_queries_and_answers(observed: Dict[str, Any]) -> None:
    dns = _of(observed, "dns")
    answers = {(r["qname"], r["qtype"]): r for r in dns if r["response"]}
    queries = {(r["qname"], r["qtype"]) for r in dns if not r["response"]}
    assert {("api.test", "A"), ("api.test", "AAAA"), ("alias.test", "A"), ("nope.test", "A"),
            ("udp.test", "A"), ("tcp.test", "A")} <= queries
    a = answers[("api.test", "A")]
    assert (a["rcode"], [x["data"] for x in a["answers"]]) == ("NOERROR", ["127.0.0.2"])
    assert [x["data"] for x in answers[("api.test", "AAAA")]["answers"]] == ["::1"]
    cn = answers[("alias.test", "A")]["answers"]
    assert [(x["type"], x["data"]) for x in cn] == [("CNAME", "api.test"), ("A", "127.0.0.2")]
    assert answers[("nope.test", "A")]["rcode"] == "NXDOMAIN" and answers[("nope.test", "A")]["answers"] == []
    assert [x["data"] for x in answers[("udp.test", "A")]["answers"]] == ["127.0.0.5"]
    tcp = answers[("tcp.test", "A")]
    assert tcp["proto"] == "tcp" and [x["data"] for x in tcp["answers"]] == ["127.0.0.6"]
    assert all(r["addr"] == "127.0.0.1" and r["port"] == 53 for r in dns)
    assert all(r["sent"] is (not r["response"]) for r in dns)


def test_connect_by_name_carries_host(observed: Dict[str, Any]) -> None:
    port = observed["manifest"]["plain_port"]
    # glibc's address sorting connects a UDP socket to each answer, then the TCP connects try ::1 (refused)
    # and 127.0.0.2: every one of them is named
    conns = [r for r in _of(observed, "connect") if r["port"] == port]
    assert {c["addr"] for c in conns} == {"127.0.0.2", "::1"} and {c["host"] for c in conns} == {"api.test"}
    dns_conns = [r for r in _of(observed, "connect") if r["port"] == 53]
    assert dns_conns and all(c["host"] is None for c in dns_conns)
    ids = {c["conn_id"]: c["addr"] for c in conns if c["conn_id"]}
    results = [(ids[r["conn_id"]], r["result"], r["host"]) for r in _of(observed, "connect_result")
               if r.get("conn_id") in ids]
    assert ("127.0.0.2", "established", "api.test") in results
    assert ("::1", "refused", "api.test") in results


def test_tls_server_name_and_the_next_connect(observed: Dict[str, Any]) -> None:
    tls = _of(observed, "tls")
    assert [(r["sni"], r["addr"], r["port"]) for r in tls] == [("direct.test", "127.0.0.4", 443)]
    conns = [r for r in _of(observed, "connect") if r["port"] == 443]
    assert [c["host"] for c in conns] == [None, "direct.test"]  # the first handshake named the address


def test_counters(observed: Dict[str, Any]) -> None:
    k = observed["counters"]["kinds"]
    assert k["dns"]["lost"] == 0 and k["dns"]["emitted"] >= 12 and k["tls"]["emitted"] == 1


def test_the_real_claude_cli_names_its_api_host(netns: Dict[str, Any], claude_cli: str) -> None:
    """Claude Code resolves its API host through glibc on a thread of its own: the lookup is a dns record of
    the Claude process, and its API connects carry the host name (here refused: nothing listens)."""
    tmp: Path = netns["tmp"]
    home = tmp / "claude-home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ, HOME=str(home), ANTHROPIC_BASE_URL="http://api.test:9",
               ANTHROPIC_API_KEY="sk-test", CLAUDE_CODE_MAX_RETRIES="0", DISABLE_TELEMETRY="1",
               DISABLE_ERROR_REPORTING="1", DISABLE_AUTOUPDATER="1")
    with monitor(endpoints={}) as mon:
        proc = subprocess.Popen([netns["ip"], "netns", "exec", netns["name"], claude_cli, "-p", "hi",
                                 "--max-turns", "1"], env=env, cwd=tmp, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        out, _ = proc.communicate(timeout=patience(120))
        assert proc.returncode != 0 and b"ConnectionRefused" in out, out[-500:]
        mon.wait_for(lambda r: r["type"] == "exit" and r["pid"] == proc.pid, timeout=patience(30))
        time.sleep(0.1)
        mon.drain()
        recs = [r for r in mon.records if r["root_pid"] == proc.pid]
    answers = [r for r in recs if r["type"] == "dns" and r["response"] and r["qname"] == "api.test"]
    assert answers and all(r["pid"] == proc.pid for r in answers)
    assert "127.0.0.2" in [a["data"] for r in answers for a in r["answers"]]
    api = [r for r in recs if r["type"] == "connect" and r["port"] == 9]
    # both answers (127.0.0.2 and ::1) are tried, and both connects are named
    assert api and {r["addr"] for r in api} <= {"127.0.0.2", "::1"}
    assert {r["host"] for r in api} == {"api.test"}
    ids = {c["conn_id"] for c in api}
    results = [r for r in recs if r["type"] == "connect_result" and r["conn_id"] in ids]
    assert results and {(r["result"], r["host"]) for r in results} == {("refused", "api.test")}
