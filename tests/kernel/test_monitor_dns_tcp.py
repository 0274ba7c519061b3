"""DNS over TCP as real clients speak it, in the real kernel, against a real resolver (dnsmasq in a network
namespace of this test, with its own resolv.conf): glibc's resolver with ``use-vc`` (a writev of two
length-prefixed queries, each answer read as its length and then its body), glibc falling back to TCP after
a truncated UDP answer, ``dig +tcp``, and a client of its own writing with writev and split writes and
reading with one-byte reads and readv. Every query and answer is one ``dns`` record with ``proto: tcp``,
and a connect to an answer's address carries its ``host``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, Iterator, List

import pytest
from dns_support import dnsmasq_netns, need
from monitor_support import ROOT, monitor
from patience import patience

WORK = ROOT / "tests" / "workload" / "dns_tcp_work.py"
BIG = 40  # A records of big.test: more than a 512-byte UDP answer holds


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Any]]:
    ip = need("ip")
    dig = shutil.which("dig")
    if dig is None and os.environ.get("RAWBPF_REQUIRE_KERNEL") == "1":
        pytest.fail("dig is not installed (make deps installs bind9-dnsutils)")
    tmp = tmp_path_factory.mktemp("dnstcp")
    records = ["host-record=ready.test,127.0.0.9", "host-record=vc.test,127.0.0.7",
               "host-record=raw.test,127.0.0.11", "host-record=split.test,127.0.0.12",
               "host-record=dig.test,127.0.0.13",
               *(f"host-record=big.test,10.9.0.{i}" for i in range(1, BIG + 1))]
    bindir = tmp / "bin"
    bindir.mkdir()
    (bindir / "claude").symlink_to(WORK)
    (bindir / "python3").symlink_to(os.path.realpath(sys.executable))
    env = dict(os.environ, PATH=f"{bindir}:{os.environ.get('PATH', '')}")
    env.pop("RES_OPTIONS", None)
    with dnsmasq_netns(tmp, records) as name, monitor(endpoints={}) as mon:
        out = subprocess.run([ip, "netns", "exec", name, str(bindir / "claude"), dig or ""], env=env,
                             capture_output=True, text=True, timeout=patience(120))
        assert out.returncode == 0, out.stderr
        man = json.loads(out.stdout)
        mon.wait_for(lambda r: r["type"] == "exit" and r["pid"] == man["pid"])
        time.sleep(0.1)
        mon.drain()
        yield {"manifest": man, "records": list(mon.records), "counters": mon.counters(), "dig": dig}


def _dns(observed: Dict[str, Any], pid: int) -> List[Dict[str, Any]]:
    return [r for r in observed["records"] if r["type"] == "dns" and r["pid"] == pid]


def _pairs(recs: List[Dict[str, Any]]) -> List[Any]:
    return [(r["qname"], r["qtype"], r["response"], r["proto"]) for r in recs]


def test_the_clients_resolved_through_dnsmasq(observed: Dict[str, Any]) -> None:
    m = observed["manifest"]
    assert m["vc"]["connected"] == "127.0.0.7" and m["tc"]["addrs"] == BIG
    assert m["raw"]["raw_reply"] > 12 and m["raw"]["split_reply"] > 12
    if observed["dig"]:
        assert m["dig"]["rc"] == 0 and m["dig"]["answer"] == ["127.0.0.13"]


def test_glibc_use_vc(observed: Dict[str, Any]) -> None:
    """One writev with both queries; each answer read as two bytes, then its body: four records."""
    vc = observed["manifest"]["vc"]
    recs = _dns(observed, vc["pid"])
    assert sorted(_pairs(recs)) == sorted([
        ("vc.test", "A", False, "tcp"), ("vc.test", "AAAA", False, "tcp"),
        ("vc.test", "A", True, "tcp"), ("vc.test", "AAAA", True, "tcp")])
    a = next(r for r in recs if r["response"] and r["qtype"] == "A")
    assert [x["data"] for x in a["answers"]] == ["127.0.0.7"] and a["rcode"] == "NOERROR"
    assert all(r["addr"] == "127.0.0.1" and r["port"] == 53 and "truncated" not in r for r in recs)
    assert all(r["sent"] is (not r["response"]) for r in recs)
    conns = [r for r in observed["records"] if r["type"] == "connect" and r["pid"] == vc["pid"]
             and r["port"] == vc["port"]]
    assert [(c["addr"], c["host"]) for c in conns] == [("127.0.0.7", "vc.test")]
    results = [r for r in observed["records"] if r["type"] == "connect_result"
               and r.get("conn_id") == conns[0]["conn_id"]]
    assert [(r["result"], r["host"]) for r in results] == [("established", "vc.test")]


def test_truncated_udp_answer_retried_over_tcp(observed: Dict[str, Any]) -> None:
    recs = _dns(observed, observed["manifest"]["tc"]["pid"])
    assert [(r["qname"], r["response"], r["proto"]) for r in recs] == [
        ("big.test", False, "udp"), ("big.test", True, "udp"),
        ("big.test", False, "tcp"), ("big.test", True, "tcp")]
    udp, tcp = recs[1], recs[3]
    assert len(udp["answers"]) < BIG and len(tcp["answers"]) == BIG
    assert {x["data"] for x in tcp["answers"]} == {f"10.9.0.{i}" for i in range(1, BIG + 1)}
    assert "truncated" not in tcp and tcp["size"] > 512


def test_writev_split_writes_byte_reads_and_readv(observed: Dict[str, Any]) -> None:
    recs = [r for r in _dns(observed, observed["manifest"]["raw"]["pid"]) if r["proto"] == "tcp"]
    assert _pairs(recs) == [("raw.test", "A", False, "tcp"), ("raw.test", "A", True, "tcp"),
                            ("split.test", "A", False, "tcp"), ("split.test", "A", True, "tcp")]
    assert [x["data"] for x in recs[1]["answers"]] == ["127.0.0.11"]
    assert [x["data"] for x in recs[3]["answers"]] == ["127.0.0.12"]
    assert [r["id"] for r in recs] == [0x3333, 0x3333, 0x4444, 0x4444]


def test_dig_over_tcp(observed: Dict[str, Any]) -> None:
    if not observed["dig"]:
        pytest.skip("dig is not installed")
    recs = _dns(observed, observed["manifest"]["dig"]["pid"])
    assert _pairs(recs) == [("dig.test", "A", False, "tcp"), ("dig.test", "A", True, "tcp")]
    assert [x["data"] for x in recs[1]["answers"]] == ["127.0.0.13"]


def test_counters(observed: Dict[str, Any]) -> None:
    k = observed["counters"]["kinds"]
    assert k["dns"]["lost"] == 0 and k["dns"]["emitted"] >= 14
    assert observed["counters"]["read_errors"] == 0


def test_a_reused_fd_is_watched_again(observed: Dict[str, Any]) -> None:
    """Each new UDP socket on a closed watched socket's fd is watched from its first sendto: no query lost."""
    raw = observed["manifest"]["raw"]
    assert len(set(raw["reuse_fds"])) == 1
    recs = [r for r in _dns(observed, raw["pid"]) if r["proto"] == "udp"]
    assert [(r["qname"], r["response"]) for r in recs] == [
        (f"reuse{i}.test", resp) for i in range(3) for resp in (False, True)]
