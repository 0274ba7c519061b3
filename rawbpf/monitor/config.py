"""Monitor configuration and its encoding into the program's maps and read-only data; pure, no syscalls.

The defaults here equal the ones compiled into programs/claude_monitor.c (a unit test keeps them in step), so
the object behaves the same whether or not user space overrides anything. Identification rules:

* comm rules: exact task names (at most 15 bytes) that start tracking at exec or rename (``claude``,
  ``claude.exe``), and *interpreters* (``node``, ``bun``) whose script argument (argv[1]) is matched against
  the path rules;
* path rules: substrings of the exec'd filename (``/claude/versions/``, ``@anthropic-ai/claude-code/``) or
  whole basenames (``claude``, ``claude.exe``); at most 16, 64 bytes each;
* endpoints: CIDR → name (``anthropic-api``), looked up in an LPM trie for every recorded connect.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from rawbpf.errors import ConfigError
from rawbpf.monitor.files import HostRule, WatchList

__tier__ = "pure"

COMM_LEN = 16
RULE_LEN = 64
MAX_PATH_RULES = 16
ENDPOINT_LEN = 32
ARGV_BUF = 4096
ARGV_MAX_ARGS = 64

COMM_TRACK = 1
COMM_INTERPRETER = 2
PATH_BASENAME = 1

DEFAULT_COMMS = ("claude", "claude.exe")
DEFAULT_INTERPRETERS = ("node", "bun")
DEFAULT_PATH_FRAGMENTS = ("/claude/versions/", "@anthropic-ai/claude-code/")
DEFAULT_BASENAMES = ("claude", "claude.exe")
DEFAULT_ENDPOINTS = (("160.79.104.0/23", "anthropic-api"), ("2607:6bc0::/48", "anthropic-api"))
DEFAULT_ARGV_MAX_ARGS = 32
DEFAULT_ARGV_MAX_BYTES = 2048
DEFAULT_PRIORITY_BOOST = 4  # as auditd's default
DEFAULT_WAKEUP_BYTES = 256 * 1024
DEFAULT_FILE_SUMMARY_NS = 1_000_000_000

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


@dataclass(frozen=True)
class PathRule:
    """A substring of the exec'd filename, or (``basename``) its whole last component."""

    text: str
    basename: bool = False


@dataclass
class MonitorConfig:
    """Everything user space decides before the monitor's programs load."""

    comms: Tuple[str, ...] = DEFAULT_COMMS
    interpreters: Tuple[str, ...] = DEFAULT_INTERPRETERS
    path_rules: Tuple[PathRule, ...] = tuple(
        [PathRule(t) for t in DEFAULT_PATH_FRAGMENTS] + [PathRule(t, True) for t in DEFAULT_BASENAMES]
    )
    endpoints: Tuple[Tuple[Network, str], ...] = field(
        default_factory=lambda: tuple((ipaddress.ip_network(c), n) for c, n in DEFAULT_ENDPOINTS)
    )
    only_endpoints: bool = False
    argv_max_args: int = DEFAULT_ARGV_MAX_ARGS
    argv_max_bytes: int = DEFAULT_ARGV_MAX_BYTES
    wakeup_bytes: int = DEFAULT_WAKEUP_BYTES
    ring_bytes: Optional[int] = None  # the ring buffer's size; None keeps the object's (4 MiB)
    #: how much the consuming thread lowers its nice value (auditd's priority_boost): a busy host must not
    #: starve the one thread that keeps the ring from filling; 0 leaves it as started
    priority_boost: int = DEFAULT_PRIORITY_BOOST
    # CIDR endpoints limited to one port (CIDR:PORT=NAME); their CIDRs are also in `endpoints` for the kernel
    endpoint_ports: Tuple[Tuple[Network, int, str], ...] = ()
    host_endpoints: Tuple[HostRule, ...] = ()  # HOST[:PORT]=NAME, named in user space from DNS/SNI
    watch: WatchList = field(default_factory=WatchList)
    file_summary_ns: int = DEFAULT_FILE_SUMMARY_NS

    def validate(self) -> MonitorConfig:
        """Check every limit the kernel program relies on; raises ConfigError naming the bad value."""
        for name in (*self.comms, *self.interpreters):
            _check_comm(name)
        if len(self.path_rules) > MAX_PATH_RULES:
            raise ConfigError(f"path rules: at most {MAX_PATH_RULES}, got {len(self.path_rules)}")
        for rule in self.path_rules:
            raw = rule.text.encode()
            if not raw or len(raw) > RULE_LEN or b"\0" in raw:
                raise ConfigError(f"path rule '{rule.text}': must be 1 to {RULE_LEN} bytes without NUL")
            if rule.basename and b"/" in raw:
                raise ConfigError(f"basename rule '{rule.text}': must not contain '/'")
        for net, name in self.endpoints:
            _check_endpoint_name(name, str(net))
        if not 1 <= self.argv_max_args <= ARGV_MAX_ARGS:
            raise ConfigError(f"argv max args: {self.argv_max_args} is not in 1..{ARGV_MAX_ARGS}")
        if not 16 <= self.argv_max_bytes <= ARGV_BUF:
            raise ConfigError(f"argv max bytes: {self.argv_max_bytes} is not in 16..{ARGV_BUF}")
        if self.wakeup_bytes < 0:
            raise ConfigError(f"wakeup bytes: {self.wakeup_bytes} is negative")
        if self.host_endpoints and self.only_endpoints:
            raise ConfigError(f"endpoint {self.host_endpoints[0].host}: a host name cannot be used with "
                              "--only-endpoints (the kernel filters by address)")
        if self.file_summary_ns < 0:
            raise ConfigError(f"file summary window: {self.file_summary_ns} is negative")
        if not 0 <= self.priority_boost <= 39:
            raise ConfigError(f"priority boost: {self.priority_boost} is not in 0..39")
        rb = self.ring_bytes
        if rb is not None and (rb < 4096 or rb & (rb - 1) or rb > 1 << 30):
            raise ConfigError(f"ring bytes: {rb} is not a power of two from 4096 to 1 GiB")
        return self

    # -- encoding for the kernel ---------------------------------------------------------------------------

    def constants(self) -> Dict[str, object]:
        """Values of the program's ``const volatile`` globals (set before load)."""
        return {
            "argv_max_args": self.argv_max_args,
            "argv_max_bytes": self.argv_max_bytes,
            "only_endpoints": int(self.only_endpoints),
            "wakeup_bytes": self.wakeup_bytes,
            "path_rules": encode_path_rules(self.path_rules),
            "file_summary_ns": self.file_summary_ns,
            "watch_reads": int(bool(self.watch.globs)),
            "watch_all_reads": int(self.watch.kernel_names()[1]),
        }

    def comm_rule_entries(self) -> List[Tuple[bytes, bytes]]:
        """(key, value) pairs for the ``comm_rules`` hash map."""
        out = {comm_key(c): COMM_TRACK for c in self.comms}
        for c in self.interpreters:
            out.setdefault(comm_key(c), COMM_INTERPRETER)
        return [(k, struct.pack("<I", v)) for k, v in out.items()]

    def endpoint_entries(self) -> List[Tuple[bytes, bytes]]:
        """(key, value) pairs for the ``endpoints`` LPM trie."""
        return [(endpoint_key(net), name.encode().ljust(ENDPOINT_LEN, b"\0")) for net, name in self.endpoints]

    def endpoint_names(self) -> Dict[str, str]:
        """CIDR[:PORT] or HOST[:PORT] text → name, for the status and log header."""
        out = {str(net): name for net, name in self.endpoints
               if not any(n == net and nm == name for n, _, nm in self.endpoint_ports)}
        out.update({f"{net}:{port}": name for net, port, name in self.endpoint_ports})
        for r in self.host_endpoints:
            out[r.host + (f":{r.port}" if r.port is not None else "")] = r.name
        return out

    def port_rules(self) -> Tuple[Tuple[Network, Optional[int], str], ...]:
        """Every CIDR endpoint with its port (None: any), when any endpoint has a port; else empty (the
        kernel's address-only names are then exact)."""
        if not self.endpoint_ports:
            return ()
        rules: List[Tuple[Network, Optional[int], str]] = [(n, p, nm) for n, p, nm in self.endpoint_ports]
        for net, name in self.endpoints:
            if not any(n == net and nm == name for n, _, nm in self.endpoint_ports):
                rules.append((net, None, name))
        return tuple(rules)


def _check_comm(name: str) -> None:
    raw = name.encode()
    if not raw or len(raw) >= COMM_LEN or b"\0" in raw:
        raise ConfigError(f"comm '{name}': must be 1 to {COMM_LEN - 1} bytes (the kernel's task name length)")


def _check_endpoint_name(name: str, where: str) -> None:
    raw = name.encode()
    if not raw or len(raw) >= ENDPOINT_LEN or b"\0" in raw:
        raise ConfigError(f"endpoint {where}: name '{name}' must be 1 to {ENDPOINT_LEN - 1} bytes")


def comm_key(name: str) -> bytes:
    """The ``comm_rules`` key of a task name: NUL-padded to 16 bytes, as bpf_get_current_comm fills it."""
    _check_comm(name)
    return name.encode().ljust(COMM_LEN, b"\0")


def encode_path_rules(rules: Sequence[PathRule]) -> bytes:
    """``struct path_rule path_rules[16]``: {u32 len; u32 flags; char text[64]} each, unused ones zero."""
    out = bytearray()
    for rule in rules:
        raw = rule.text.encode()
        flags = PATH_BASENAME if rule.basename else 0
        out += struct.pack("<II", len(raw), flags) + raw.ljust(RULE_LEN, b"\0")
    out += bytes((8 + RULE_LEN) * (MAX_PATH_RULES - len(rules)))
    return bytes(out)


def decode_path_rules(raw: bytes) -> List[PathRule]:
    """The inverse of :func:`encode_path_rules` (skips unused entries)."""
    size = 8 + RULE_LEN
    rules = []
    for i in range(0, len(raw) - size + 1, size):
        n, flags = struct.unpack_from("<II", raw, i)
        if n:
            rules.append(PathRule(raw[i + 8 : i + 8 + n].decode(), bool(flags & PATH_BASENAME)))
    return rules


def endpoint_key(net: Network) -> bytes:
    """LPM key {u32 prefixlen; u8 addr[16]}: IPv4 is stored IPv4-mapped with the prefix length + 96."""
    if isinstance(net, ipaddress.IPv4Network):
        mapped = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + net.network_address.packed)
        return struct.pack("<I", net.prefixlen + 96) + mapped.packed
    return struct.pack("<I", net.prefixlen) + net.network_address.packed


def parse_endpoint(text: str) -> Tuple[Network, str]:
    """``CIDR=NAME`` (for ``--endpoint``) → (network, name)."""
    spec = parse_endpoint_spec(text)
    if not isinstance(spec[0], (ipaddress.IPv4Network, ipaddress.IPv6Network)) or spec[1] is not None:
        raise ConfigError(f"endpoint '{text}': expected CIDR=NAME")
    return spec[0], spec[2]


_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST = re.compile(rf"(?:\*\.)?(?:{_LABEL}\.)*[A-Za-z][A-Za-z0-9-]*\.?")


def _port(text: str, where: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ConfigError(f"endpoint '{where}': port '{text}' is not in 1..65535")
    return int(text)


def parse_endpoint_spec(text: str) -> Tuple[Union[Network, str], Optional[int], str]:
    """``CIDR[:PORT]=NAME`` or ``HOST[:PORT]=NAME`` → (network or lower-case host, port or None, name).

    An IPv6 address with a port is written in brackets (``[::1]:53=dns``) or with its prefix
    (``2607:6bc0::/48:443=api``); a host name may start with ``*.`` for any subdomain."""
    target, sep, name = text.partition("=")
    target, name = target.strip(), name.strip()
    if not sep or not name or not target:
        raise ConfigError(f"endpoint '{text}': expected CIDR[:PORT]=NAME or HOST[:PORT]=NAME, "
                          "e.g. 160.79.104.0/23=anthropic-api or api.anthropic.com=anthropic-api")
    _check_endpoint_name(name, target)
    port: Optional[int] = None
    addr = target
    if target.startswith("["):
        inner, close, rest = target[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            raise ConfigError(f"endpoint '{text}': expected [IPV6]:PORT")
        addr = inner
        if rest:
            port = _port(rest[1:], text)
    elif "/" in target:
        net_part, _, tail = target.partition("/")
        if ":" in tail:
            plen, _, p = tail.partition(":")
            addr, port = f"{net_part}/{plen}", _port(p, text)
    elif target.count(":") == 1:
        addr, _, p = target.partition(":")
        port = _port(p, text)
    try:
        return ipaddress.ip_network(addr, strict=False), port, name
    except ValueError as err:
        if any(c.isalpha() for c in addr) and _HOST.fullmatch(addr) and ":" not in addr:
            return addr.rstrip(".").lower(), port, name
        raise ConfigError(f"endpoint '{text}': {err}") from err


def build_config(
    *,
    match_comm: Iterable[str] = (),
    match_path: Iterable[str] = (),
    match_name: Iterable[str] = (),
    interpreters: Optional[Iterable[str]] = None,
    endpoints: Iterable[str] = (),
    no_default_rules: bool = False,
    no_default_endpoints: bool = False,
    only_endpoints: bool = False,
    argv_max_args: Optional[int] = None,
    argv_max_bytes: Optional[int] = None,
    ring_bytes: Optional[int] = None,
    priority_boost: Optional[int] = None,
    watch_read: Iterable[str] = (),
    no_default_watch: bool = False,
    file_summary_ms: Optional[float] = None,
) -> MonitorConfig:
    """A validated MonitorConfig from command-line style values.

    Extra rules add to the defaults unless ``no_default_rules``; ``--endpoint`` entries add to (or with
    ``no_default_endpoints`` replace) the default endpoints.
    """
    base = MonitorConfig()
    comms = [] if no_default_rules else list(base.comms)
    paths = [] if no_default_rules else list(base.path_rules)
    interp = list(base.interpreters) if interpreters is None else list(interpreters)
    comms += [c for c in match_comm if c not in comms]
    paths += [PathRule(p) for p in match_path]
    paths += [PathRule(n, True) for n in match_name]
    eps: List[Tuple[Network, str]] = [] if no_default_endpoints else list(base.endpoints)
    ports: List[Tuple[Network, int, str]] = []
    hosts: List[HostRule] = []
    for e in endpoints:
        target, port, name = parse_endpoint_spec(e)
        if isinstance(target, str):
            hosts.append(HostRule(target, name, port))
        else:
            eps.append((target, name))
            if port is not None:
                ports.append((target, port, name))
    cfg = MonitorConfig(
        comms=tuple(comms),
        interpreters=tuple(interp),
        path_rules=tuple(dict.fromkeys(paths)),
        endpoints=tuple(eps),
        only_endpoints=only_endpoints,
        argv_max_args=base.argv_max_args if argv_max_args is None else argv_max_args,
        argv_max_bytes=base.argv_max_bytes if argv_max_bytes is None else argv_max_bytes,
        ring_bytes=ring_bytes,
        priority_boost=base.priority_boost if priority_boost is None else priority_boost,
        endpoint_ports=tuple(ports),
        host_endpoints=tuple(hosts),
        watch=WatchList.build(watch_read, defaults=not no_default_watch),
        file_summary_ns=(base.file_summary_ns if file_summary_ms is None
                         else int(file_summary_ms * 1_000_000)),
    )
    return cfg.validate()


def match_endpoint(endpoints: Mapping[Network, str], addr: str) -> Optional[str]:
    """The name of the longest-prefix endpoint containing ``addr`` (for records made in user space)."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    best: Optional[Tuple[int, str]] = None
    for net, name in endpoints.items():
        if ip.version == net.version and ip in net and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, name)
    return best[1] if best else None
