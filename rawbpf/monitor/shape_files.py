"""Shape the monitor's file, dns and tls kernel records, and name connections; pure, no syscalls.

:class:`FileShaping` is the state these records need across the stream: the watch list (a read record the
kernel sent as a candidate is kept only when its absolute path matches a glob for its owner's home), host
names learnt per Claude tree from DNS answers and TLS server names, the sessions learnt from transcripts,
host-name endpoint rules, and the last record of each summarised file key (for the sweep's remainder
records). :class:`rawbpf.monitor.shape.Shaper` calls it for these kinds and for ``connect`` records.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from rawbpf.monitor.dns import DnsError, parse_dns
from rawbpf.monitor.dnsstream import TcpDnsStreams
from rawbpf.monitor.files import (
    FF_CUT1,
    FF_CUT2,
    FF_SENSITIVE,
    OPS,
    HostNames,
    HostRule,
    WatchList,
    canonical_addr,
    file_paths,
    home_of,
    transcript_session,
)
from rawbpf.monitor.tls import TlsError, parse_client_hello

__tier__ = "pure"

SOCK_STREAM = 1
FileKey = Tuple[int, str, int, int, int]  # pid, op, dev, ino, generation


def match_port_rules(rules: Tuple[Tuple[Any, Optional[int], str], ...], addr: str,
                     port: Optional[int]) -> Optional[str]:
    """The name of the longest-prefix CIDR rule containing ``addr`` whose port is ``port`` or unset (a rule
    with a port wins over one without at the same prefix)."""
    try:
        ip = ipaddress.ip_address(canonical_addr(addr))
    except ValueError:
        return None
    best: Optional[Tuple[int, int, str]] = None
    for net, rport, name in rules:
        if ip.version != net.version or ip not in net or rport not in (None, port):
            continue
        rank = (net.prefixlen, 1 if rport is not None else 0)
        if best is None or rank > best[:2]:
            best = (rank[0], rank[1], name)
    return best[2] if best else None


def _home_unknown(uid: int) -> str:
    raise KeyError(uid)


@dataclass
class FileShaping:
    """State and rules for shaping file/dns/tls records and naming connections."""

    watch: WatchList = field(default_factory=WatchList)
    home: Callable[[int], str] = _home_unknown  # uid → home directory (pwd in the daemon)
    host_rules: Tuple[HostRule, ...] = ()
    # every CIDR endpoint, with its port or None, when any has a port: the kernel names by address only
    port_rules: Tuple[Tuple[Any, Optional[int], str], ...] = ()
    hosts: HostNames = field(default_factory=HostNames)
    sessions: Dict[int, Dict[str, str]] = field(default_factory=dict)  # root pid → session_id, transcript
    last_write: Dict[FileKey, Dict[str, Any]] = field(default_factory=dict)
    conn_hosts: Dict[int, Optional[str]] = field(default_factory=dict)  # conn_id → host, until its result
    max_last_write: int = 16384
    # DNS over TCP: messages reassembled per (pid, fd, socket inode, sent); the socket each (pid, fd) names
    tcp: TcpDnsStreams = field(default_factory=TcpDnsStreams)
    tcp_socks: Dict[Tuple[int, int], int] = field(default_factory=dict)

    def _home(self, uid: int) -> str:
        return home_of(uid, self.home)

    # -- file

    @staticmethod
    def op_name(value: Any) -> str:
        """A file record's ``op`` from the decoded ``op`` member (an enum label or a number)."""
        if isinstance(value, str):
            op = value.lower()
            return op[4:] if op.startswith("fop_") else op
        return OPS.get(int(value), str(value))

    def file(self, rec: Dict[str, Any], out: Dict[str, Any], data: bytes) -> Optional[Dict[str, Any]]:
        """The file record from a decoded kernel record ``rec``, its header fields in ``out`` and its
        ``data`` (names and dentry chains); None for a read no watch glob matches."""
        g = rec.get
        return self.file_fields(out, self.op_name(g("op", 0)), int(g("fflags", 0)), int(g("name1_len", 0)),
                                int(g("walk1_len", 0)), int(g("name2_len", 0)), int(g("walk2_len", 0)),
                                int(g("ret", 0)), int(g("count", 1)), int(g("mode", 0)),
                                int(g("owner_uid", 0)), int(g("owner_gid", 0)), int(g("ino", 0)),
                                int(g("dev", 0)), int(g("gen", 0)), data)

    def file_fields(self, out: Dict[str, Any], op: str, fflags: int, n1: int, w1: int, n2: int, w2: int,
                    ret: int, count: int, mode: int, owner_uid: int, owner_gid: int, ino: int, dev: int,
                    gen: int, data: bytes) -> Optional[Dict[str, Any]]:
        """:meth:`file` from the record's members (the monitor's precompiled path calls this directly)."""
        lens = (n1, w1, n2, w2)
        path, path2 = file_paths(data, lens, fflags, op)
        out.update(op=op, path=path)
        if op in ("rename", "link", "symlink"):
            out["path2"] = path2
        out["ret"] = ret
        out["count"] = count or 1
        if op in ("chmod", "mkdir") or (op == "create" and mode):
            out["mode"] = mode & 0o7777
        if op == "chown":
            for k, v in (("owner_uid", owner_uid), ("owner_gid", owner_gid)):
                v &= 0xFFFFFFFF
                out[k] = None if v == 0xFFFFFFFF else v
        if fflags & (FF_CUT1 | FF_CUT2):
            out["truncated"] = True
        if op == "read":
            home = self._home(out["uid"])
            if not (fflags & FF_SENSITIVE) or path is None or not self.watch.matches(path, home):
                return None  # a candidate of the kernel's name prefilter that no glob matches
            out["sensitive"] = True
        if op in ("create", "write") and path and out["pid"] == out["root_pid"] and out["ret"] == 0:
            sid = transcript_session(path)  # wherever HOME points: the CLI may run with another
            if sid is not None:
                out["transcript"] = True
                if out.get("session_id") is None:
                    out["session_id"] = sid
                self.sessions[out["root_pid"]] = {"session_id": sid, "transcript": path}
        if ino and op in ("create", "write", "truncate"):
            key: FileKey = (out["pid"], op, dev, ino, gen)
            self.last_write[key] = out
            if len(self.last_write) > self.max_last_write:
                self.last_write.pop(next(iter(self.last_write)))
        return out

    def remainder(self, pid: int, op: str, dev: int, ino: int, gen: int, pending: int, now_ns: int
                  ) -> Optional[Dict[str, Any]]:
        """The record for ``pending`` folded writes of a key the sweep removed (None if never seen)."""
        last = self.last_write.pop((pid, op, dev, ino, gen), None)
        if last is None or pending <= 0:
            return None
        out = dict(last)
        out["ts"] = now_ns
        out["count"] = pending
        out.pop("transcript", None)
        return out

    # -- dns and tls

    def dns(self, rec: Dict[str, Any], out: Dict[str, Any], data: bytes) -> List[Dict[str, Any]]:
        """The dns records of one capture: a datagram is one message; a TCP capture is a piece of a stream,
        which yields the messages it completes (none, one, or several). ``out["size"]`` is the bytes the
        call moved; a record's ``size`` is its message's, and ``truncated`` marks a message not all
        captured (its answers are those that fit)."""
        if int(rec.get("sock_type", 0)) != SOCK_STREAM:
            shaped = self._dns_message(out, data, out.get("size", len(data)), "udp")
            return [shaped] if shaped is not None else []
        pid, fd, ino = out["pid"], int(rec.get("fd", -1)), int(rec.get("sock_ino", 0))
        records: List[Dict[str, Any]] = []
        if self.tcp_socks.get((pid, fd), ino) != ino:  # the fd was closed and names another socket now
            old = self.tcp_socks[(pid, fd)]
            for sent in (False, True):
                records += self._tcp_records(self.tcp.close((pid, fd, old, sent)))
        self.tcp_socks[(pid, fd)] = ino
        if len(self.tcp_socks) > self.max_last_write:
            self.tcp_socks.pop(next(iter(self.tcp_socks)))
        pieces = self.tcp.feed((pid, fd, ino, bool(out.get("sent"))), data, out.get("size", len(data)), out)
        return records + self._tcp_records(pieces)

    def end_process(self, pid: int) -> List[Dict[str, Any]]:
        """A process exited: its TCP streams end; a message it had only partly sent or received is
        recorded as truncated."""
        for key in [k for k in self.tcp_socks if k[0] == pid]:
            del self.tcp_socks[key]
        return self._tcp_records(self.tcp.close_where(lambda k: isinstance(k, tuple) and k[0] == pid))

    def _tcp_records(self, pieces: List[Any]) -> List[Dict[str, Any]]:
        out = []
        for m in pieces:
            shaped = self._dns_message(dict(m.tag), m.data, m.length, "tcp", cut=m.cut)
            if shaped is not None:
                out.append(shaped)
        return out

    def _dns_message(self, out: Dict[str, Any], data: bytes, size: int, proto: str, *,
                     cut: Optional[bool] = None) -> Optional[Dict[str, Any]]:
        try:
            msg = parse_dns(data)
        except DnsError:
            return None
        out.update(qname=msg.qname, qtype=msg.qtype, rcode=msg.rcode,
                   answers=[a.as_dict() for a in msg.answers], response=msg.response, id=msg.id,
                   proto=proto, size=size)
        if cut if cut is not None else len(data) < size:
            out["truncated"] = True
        if msg.response:
            for a in msg.addresses():
                self.hosts.learn(out["root_pid"], a, msg.qname)
        return out

    def tls(self, rec: Dict[str, Any], out: Dict[str, Any], data: bytes) -> Optional[Dict[str, Any]]:
        try:
            hello = parse_client_hello(data)
        except TlsError:
            return None
        out.update(sni=hello.sni, alpn=hello.alpn)
        if hello.sni and out.get("addr"):
            self.hosts.learn(out["root_pid"], out["addr"], hello.sni)
        return out

    # -- connections

    def name_connect(self, out: Dict[str, Any]) -> None:
        """Add ``host`` (from a prior answer or server name in the tree) and a host-rule ``endpoint``."""
        addr = out.get("addr")
        out["host"] = None
        if not addr or out.get("family") not in ("inet", "inet6"):
            return
        host = self.hosts.lookup(out.get("root_pid", 0), canonical_addr(addr))
        out["host"] = host
        conn_id = out.get("conn_id")
        if conn_id and host:
            self.conn_hosts[conn_id] = host
            if len(self.conn_hosts) > self.max_last_write:
                self.conn_hosts.pop(next(iter(self.conn_hosts)))
        port = out.get("port")
        if self.port_rules:
            out["endpoint"] = match_port_rules(self.port_rules, addr, port)
        for rule in self.host_rules:
            if rule.matches(host) and rule.port in (None, port):
                out["endpoint"] = rule.name
                break

    def host_of_conn(self, conn_id: Optional[int]) -> Optional[str]:
        """The host of the connect whose ``connect_result`` this is (each is asked for once)."""
        return self.conn_hosts.pop(conn_id, None) if conn_id else None

    def session_of(self, root: int) -> Optional[str]:
        s = self.sessions.get(root)
        return s["session_id"] if s else None

    def status(self) -> List[Dict[str, Any]]:
        """The sessions learnt from transcripts, for the status file."""
        return [{"root_pid": r, **v} for r, v in sorted(self.sessions.items())]
