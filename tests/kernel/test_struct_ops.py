"""struct_ops against the real kernel: a BPF TCP congestion control registered, chosen by a loopback TCP
connection with TCP_CONGESTION, run by the kernel (its counters move), and unregistered again.

Both ways of registering are covered: a ``.struct_ops`` map (map update of key 0, undone by deleting it) and a
``.struct_ops.link`` map (a BPF link that owns the registration). A guard fixture unregisters anything a
failing test left registered, and then fails the test.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List

import pytest
from kernel_limits import require

from rawbpf.attach import Link, StructOpsRegistration
from rawbpf.collection import Collection
from rawbpf.consts import MapType
from rawbpf.elf import load_spec
from rawbpf.errors import SyscallError
from rawbpf.maps import Map, iter_ids

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
AVAILABLE = "/proc/sys/net/ipv4/tcp_available_congestion_control"
COUNTERS = ("init_calls", "ssthresh_calls", "cong_avoid_calls", "undo_calls")

# object, struct_ops map, the congestion control's name
VARIANTS = [("struct_ops_tcp.o", "rawbpf_reno", "rawbpf_reno"),
            ("struct_ops_link.o", "rawbpf_renolk", "rawbpf_renolk")]


def available() -> List[str]:
    with open(AVAILABLE) as f:
        return f.read().split()


def require_struct_ops_link() -> None:
    """.struct_ops.link maps (BPF_F_LINK, registered by BPF_LINK_CREATE) came with bpf_struct_ops_link."""
    from rawbpf.btf import Kind
    from rawbpf.externs import vmlinux

    require(vmlinux().find("bpf_struct_ops_link", Kind.STRUCT) is not None,
            "struct_ops maps registered through a BPF link (.struct_ops.link)", "6.4")


def gone(cc: str, timeout: float = 5.0) -> bool:
    """Whether ``cc`` is unregistered within ``timeout``: a link freed by removing its last pin is released
    from a kernel work queue, a moment later (closing its last fd releases it at once)."""
    deadline = time.monotonic() + timeout
    while cc in available():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _unregister_leftovers(map_name: str) -> int:
    """Unregister every struct_ops map called ``map_name`` that is still registered (a failed test's)."""
    undone = 0
    for map_id in list(iter_ids()):
        try:
            m = Map.from_id(map_id)
        except SyscallError:
            continue
        with m:
            if m.type == MapType.STRUCT_OPS and m.name == map_name and m.delete(0):
                undone += 1
    return undone


@pytest.fixture(params=VARIANTS, ids=["struct_ops", "struct_ops.link"])
def variant(request: pytest.FixtureRequest) -> Iterator[tuple]:
    obj, map_name, cc = request.param
    if obj == "struct_ops_link.o":
        require_struct_ops_link()
    if cc in available():
        pytest.fail(f"{cc} is already registered before the test (another run?)")
    yield request.param
    if cc in available():
        _unregister_leftovers(map_name)
        deadline = time.monotonic() + 5
        while cc in available() and time.monotonic() < deadline:
            time.sleep(0.05)
        pytest.fail(f"{cc} was left registered (unregistered by the guard)")


def transfer(cc: str, size: int = 4 << 20) -> str:
    """Send ``size`` bytes over a loopback TCP connection whose sender uses congestion control ``cc``;
    returns what getsockopt(TCP_CONGESTION) said on the sender."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    cl = socket.socket()
    try:
        cl.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
        cl.connect(srv.getsockname())
        peer, _ = srv.accept()
        with peer:
            chosen = cl.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0").decode()
            chunk = b"r" * (256 << 10)
            got = 0
            for _ in range(size // len(chunk)):
                cl.sendall(chunk)
                while got < len(chunk) * (_ + 1):
                    got += len(peer.recv(1 << 20))
        return chosen
    finally:
        cl.close()
        srv.close()


def test_a_bpf_congestion_control_is_registered_used_and_unregistered(variant: tuple) -> None:
    obj, map_name, cc = variant
    with Collection.load(load_spec(DATA / obj)) as coll:
        assert cc not in available()  # loading alone registers nothing
        coll.attach_all()
        reg = coll.struct_ops[map_name]
        assert isinstance(reg, Link if obj == "struct_ops_link.o" else StructOpsRegistration)
        assert cc in available()
        assert transfer(cc) == cc
        counts = {name: coll.variables[name] for name in COUNTERS}
        assert counts["init_calls"] >= 1, counts  # the connection was set up by our init
        assert counts["cong_avoid_calls"] > 0, counts  # and its ACKs went through our cong_avoid
    assert cc not in available()
    with socket.socket() as s, pytest.raises(OSError) as info:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
    assert info.value.errno == errno.ENOENT


def test_closing_the_registration_alone_unregisters(variant: tuple) -> None:
    obj, map_name, cc = variant
    with Collection.load(load_spec(DATA / obj)) as coll:
        coll.attach_all()
        assert cc in available()
        coll.struct_ops[map_name].close()
        assert cc not in available()


def test_a_second_registration_of_one_name_is_refused_with_the_reason(variant: tuple) -> None:
    obj, _map_name, cc = variant
    with Collection.load(load_spec(DATA / obj)) as first, Collection.load(load_spec(DATA / obj)) as second:
        first.attach_all()
        with pytest.raises(SyscallError) as info:
            second.attach_all()
        assert info.value.errno == errno.EEXIST
        assert "already registered" in info.value.summary() and "\n" not in info.value.summary()
        assert second.struct_ops == {} and cc in available()
    assert cc not in available()


def test_a_pinned_link_keeps_the_registration_until_unpinned(pin_dir: Path) -> None:
    require_struct_ops_link()
    if "rawbpf_renolk" in available():
        pytest.fail("rawbpf_renolk is already registered before the test")
    with Collection.load(load_spec(DATA / "struct_ops_link.o")) as coll:
        coll.attach_all()
        pins = coll.pin(str(pin_dir))
        assert str(pin_dir / "links" / "rawbpf_renolk") in pins
        assert str(pin_dir / "rawbpf_renolk") in pins
        with Link.from_pin(pin_dir / "links" / "rawbpf_renolk") as pinned:
            assert pinned.info().id > 0
    assert gone("rawbpf_renolk")  # close() unpinned it: the registration ended with the link
    assert not (pin_dir / "links").exists() or not any((pin_dir / "links").iterdir())


def test_rawbpf_load_registers_until_sigint_and_leaves_nothing(variant: tuple, tmp_path: Path) -> None:
    obj, _map_name, cc = variant
    pin_root = f"/sys/fs/bpf/rawbpf-test-so-{os.getpid()}"
    proc = subprocess.Popen([sys.executable, "-m", "rawbpf", "load", str(DATA / obj), "--pin-dir", pin_root],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while cc not in available() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert cc in available(), proc.stderr.read() if proc.poll() is not None else "not registered in 60 s"
        assert transfer(cc, 1 << 20) == cc
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, 130, -signal.SIGINT), err
    assert f"registered struct_ops {_map_name}" in out + err
    assert gone(cc)  # a pinned link ends when its pin is removed
    assert not os.path.exists(pin_root) or not any(Path(pin_root).rglob("*"))


def _start_load(obj: str, pin_root: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rawbpf", "load", str(DATA / obj), "--pin-dir", pin_root],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_registered(proc: subprocess.Popen, cc: str) -> str:
    """Read the run's output up to the line saying it runs: registered and pinned (its own registration,
    not another's)."""
    assert proc.stdout is not None
    seen = ""
    for line in proc.stdout:
        seen += line
        if "Ctrl-C or SIGTERM to stop" in line:
            break
    assert "registered struct_ops" in seen, seen
    assert cc in available(), seen + (proc.stderr.read() if proc.poll() is not None else "")
    return seen


def test_the_next_run_unregisters_what_a_killed_one_left(variant: tuple) -> None:
    """kill -9 leaves a registration behind (a .struct_ops map is held by the kernel, a pinned link by its
    pin); the next rawbpf load of the object in that pin directory ends it before registering its own."""
    obj, _map_name, cc = variant
    pin_root = f"/sys/fs/bpf/rawbpf-test-so9-{os.getpid()}"
    procs = [_start_load(obj, pin_root)]
    try:
        _wait_registered(procs[0], cc)
        procs[0].kill()
        procs[0].communicate(timeout=30)
        time.sleep(0.2)
        assert cc in available()  # what kill -9 leaves
        procs.append(_start_load(obj, pin_root))
        said = _wait_registered(procs[1], cc)
        assert transfer(cc, 1 << 20) == cc
        procs[1].send_signal(signal.SIGINT)
        _out, err = procs[1].communicate(timeout=30)
        assert procs[1].returncode in (0, 130, -signal.SIGINT), err
        assert "stale pins" in err, said + err
        assert f"unregistered struct_ops {_map_name}, left registered by pid" in err, said + err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if os.path.exists(pin_root):
            from rawbpf import bpffs

            bpffs.remove_tree(pin_root)
    assert gone(cc)


def test_the_link_variant_has_the_tags_libbpf_gives_the_same_programs() -> None:
    """libbpf 1.1 does not read .struct_ops.link (it came in 1.2), so struct_ops_link.o is checked through
    struct_ops_tcp.o: same programs, whose tags test_libbpf_tags.py checks against libbpf's."""
    require_struct_ops_link()
    tags = []
    for obj in ("struct_ops_tcp.o", "struct_ops_link.o"):
        with Collection.load(load_spec(DATA / obj)) as coll:
            tags.append({n: p.info().tag.hex() for n, p in coll.programs.items()})
    assert tags[0] == tags[1] and len(tags[0]) == 4
