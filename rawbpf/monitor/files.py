"""File records, the sensitive-read watch list, the transcript, and host names for connections; pure.

* :func:`file_paths` turns what the kernel sends for a file event (the caller's names and the dentry chains
  of the directories they are relative to, leaf first; see programs/claude_files.h) into absolute paths:
  chains reversed, names joined, ``.`` and ``..`` resolved lexically.
* :class:`WatchList` holds the globs of sensitive reads (``~`` is the home of the process's owner, ``**``
  any number of directories, a trailing ``/`` everything below) and encodes the names the kernel prefilters
  on (``watch_names``); user space then matches the exact glob.
* :func:`transcript_session` recognises Claude Code's transcript, ``~/.claude/projects/<project>/<id>.jsonl``.
* :class:`HostNames` remembers, per Claude tree, which host name a DNS answer or a TLS server name gave an
  address, so that later connects of the tree carry ``host``.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from rawbpf.errors import ConfigError

__tier__ = "pure"

OPS: Dict[int, str] = {
    1: "create", 2: "write", 3: "truncate", 4: "delete", 5: "rename", 6: "mkdir", 7: "rmdir", 8: "chmod",
    9: "chown", 10: "link", 11: "symlink", 12: "read",
}
FF_FILE1, FF_CUT1, FF_CUT2, FF_SENSITIVE, FF_WALK1, FF_WALK2 = 1, 2, 4, 8, 16, 32

DEFAULT_WATCH_READS: Tuple[str, ...] = (
    "~/.ssh/", "~/.aws/", "~/.config/gcloud/", "~/.netrc", "~/.docker/config.json", "~/.kube/config",
    "**/.env", "/etc/shadow", "~/.claude/.credentials.json",
)
WATCH_NAME_LEN = 32
WATCH_LEAF, WATCH_DIR = 1, 2
MAX_WATCH_NAMES = 256
_WILD = re.compile(r"[*?\[]")


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


_CHAINS: Dict[bytes, str] = {}  # chain → directory: a process's events mostly name the same few directories
_CHAINS_MAX, _CHAIN_KEPT = 1024, 512  # entries, and the longest chain kept (bytes): at most ~1.5 MB


def chain_dir(chain: bytes) -> str:
    """The directory a leaf-first, NUL-terminated dentry chain names (``b"b\\0a\\0"`` → ``/a/b``)."""
    d = _CHAINS.get(chain)
    if d is None:
        # decoded whole: a NUL never belongs to a multi-byte sequence, so this equals decoding each name
        parts = [p for p in _text(chain).split("\0") if p]
        parts.reverse()
        d = "/" + "/".join(parts)
        if len(chain) <= _CHAIN_KEPT:
            if len(_CHAINS) >= _CHAINS_MAX:
                _CHAINS.clear()
            _CHAINS[chain] = d
    return d


def normalize(path: str) -> str:
    """``.``, ``..`` and repeated slashes resolved lexically (``..`` at the root stays at the root)."""
    if "/." not in path and "//" not in path and path.startswith("/") and (path == "/" or path[-1] != "/"):
        return path  # nothing to resolve (the usual case)
    out = posixpath.normpath(path)
    return "/" + out.lstrip("/") if out.startswith("//") else out


def _one_path(name: bytes, chain: bytes, walked: bool, is_file: bool) -> Optional[str]:
    if is_file:
        return chain_dir(chain)
    if not name:
        return None
    text = _text(name)
    if text.startswith("/"):
        return normalize(text)
    if not walked:
        return text  # relative to a directory the kernel could not name (a bad dirfd): as given
    return normalize(chain_dir(chain) + "/" + text)


def file_paths(data: bytes, lens: Sequence[int], fflags: int, op: str
               ) -> Tuple[Optional[str], Optional[str]]:
    """(path, path2) of a file record; ``lens``: bytes of name1, walk1, name2, walk2 in ``data``.

    A symlink's path2 is its target exactly as written (never resolved)."""
    n1, w1, n2, w2 = map(int, lens)
    name1 = data[:n1]
    chain1 = data[n1 : n1 + w1]
    name2 = data[n1 + w1 : n1 + w1 + n2]
    chain2 = data[n1 + w1 + n2 : n1 + w1 + n2 + w2]
    path = _one_path(name1, chain1, bool(fflags & FF_WALK1), bool(fflags & FF_FILE1))
    if op == "symlink":
        path2: Optional[str] = _text(name2) if n2 else None
    else:
        path2 = _one_path(name2, chain2, bool(fflags & FF_WALK2), False) if (n2 or w2) else None
    return path, path2


# -- the sensitive-read watch list

def glob_regex(glob: str, home: str) -> re.Pattern[str]:
    """The regex of one watch glob for a process whose owner's home is ``home``."""
    g = glob
    if g == "~" or g.startswith("~/"):
        g = home.rstrip("/") + g[1:]
    out = ""
    i = 0
    while i < len(g):
        if g.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif g.startswith("**", i):
            out += ".*"
            i += 2
        elif g[i] == "*":
            out += "[^/]*"
            i += 1
        elif g[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(g[i])
            i += 1
    if g.endswith("/"):
        out += ".*"
    if not g.startswith("/"):
        out = "(?:.*/)?" + out if not out.startswith("(?:.*/)?") else out
    return re.compile(out + r"\Z")


@dataclass
class WatchList:
    """Globs of reads worth recording (``op: read``, ``sensitive: true``)."""

    globs: Tuple[str, ...] = DEFAULT_WATCH_READS
    _cache: Dict[Tuple[str, str], re.Pattern[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, extra: Iterable[str] = (), *, defaults: bool = True) -> WatchList:
        globs = list(DEFAULT_WATCH_READS) if defaults else []
        for g in extra:
            g = g.strip()
            if not g:
                raise ConfigError("watch glob: empty (--watch-read)")
            if not (g.startswith("/") or g.startswith("~") or g.startswith("**")):
                raise ConfigError(f"watch glob '{g}': must start with /, ~/ or **/ (--watch-read)")
            if g not in globs:
                globs.append(g)
        wl = cls(tuple(globs))
        if len(wl.kernel_names()[0]) > MAX_WATCH_NAMES:
            raise ConfigError(f"watch globs: at most {MAX_WATCH_NAMES} distinct names (--watch-read)")
        return wl

    def kernel_names(self) -> Tuple[Dict[str, int], bool]:
        """(name → WATCH_LEAF|WATCH_DIR, every read) for the kernel's prefilter: a glob's last literal
        component when it is the file's own name, else its nearest literal directory; a glob without one
        makes the kernel send every tracked read."""
        names: Dict[str, int] = {}
        every = False
        for g in self.globs:
            parts = [p for p in g.split("/") if p]
            leaf_is_file = not g.endswith("/")
            pick: Optional[Tuple[str, int]] = None
            for i in range(len(parts) - 1, -1, -1):
                p = parts[i]
                if p in ("~", "**") or _WILD.search(p) or len(p.encode()) >= WATCH_NAME_LEN:
                    continue
                pick = (p, WATCH_LEAF if (i == len(parts) - 1 and leaf_is_file) else WATCH_DIR)
                break
            if pick is None:
                every = True
                continue
            names[pick[0]] = names.get(pick[0], 0) | pick[1]
        return names, every

    def map_entries(self) -> List[Tuple[bytes, bytes]]:
        """(key, value) pairs of the ``watch_names`` hash map."""
        names, _ = self.kernel_names()
        return [(n.encode().ljust(WATCH_NAME_LEN, b"\0"), v.to_bytes(4, "little")) for n, v in names.items()]

    def matches(self, path: str, home: str) -> bool:
        """Does any glob match ``path`` for a process whose owner's home is ``home``?"""
        for g in self.globs:
            rx = self._cache.get((g, home))
            if rx is None:
                rx = self._cache[(g, home)] = glob_regex(g, home)
            if rx.match(path):
                return True
        return False


# -- Claude's transcript

_TRANSCRIPT = re.compile(r"/\.claude/projects/[^/]+/(?P<id>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                         r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\.jsonl\Z")


def transcript_session(path: str, home: Optional[str] = None) -> Optional[str]:
    """The session id if ``path`` is a Claude Code transcript (under ``home``'s ``.claude`` when given)."""
    m = _TRANSCRIPT.search(path) if path.endswith(".jsonl") else None
    if m is None:
        return None
    if home is not None and not path.startswith(home.rstrip("/") + "/.claude/"):
        return None
    return m.group("id")


# -- host names for addresses

def canonical_addr(addr: str) -> str:
    """An address as the monitor writes it (IPv4-mapped IPv6 as IPv4)."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return addr
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class HostNames:
    """Per Claude tree (root pid): address → the host name that led to it, most recent first, bounded."""

    def __init__(self, per_tree: int = 4096, trees: int = 256) -> None:
        self.per_tree = per_tree
        self.trees = trees
        self._by_root: OrderedDict[int, OrderedDict[str, str]] = OrderedDict()

    def learn(self, root: int, addr: str, host: str) -> None:
        names = self._by_root.get(root)
        if names is None:
            names = self._by_root[root] = OrderedDict()
            while len(self._by_root) > self.trees:
                self._by_root.popitem(last=False)
        self._by_root.move_to_end(root)
        a = canonical_addr(addr)
        names[a] = host
        names.move_to_end(a)
        while len(names) > self.per_tree:
            names.popitem(last=False)

    def lookup(self, root: int, addr: str) -> Optional[str]:
        names = self._by_root.get(root)
        return None if names is None else names.get(canonical_addr(addr))


@dataclass(frozen=True)
class HostRule:
    """``--endpoint HOST[:PORT]=NAME``: connections whose ``host`` is HOST (any subdomain with ``*.``) and,
    when given, whose port is PORT, are NAME."""

    host: str
    name: str
    port: Optional[int] = None

    def matches(self, host: Optional[str]) -> bool:
        if not host:
            return False
        h = host.rstrip(".").lower()
        if self.host.startswith("*."):
            return h.endswith(self.host[1:])
        return h == self.host


def home_of(uid: int, lookup: Callable[[int], str]) -> str:
    """The home directory of ``uid`` via ``lookup`` (pwd.getpwuid(uid).pw_dir), ``/`` when unknown."""
    try:
        return lookup(uid)
    except (KeyError, OSError):
        return "/"
