"""The monitor's precompiled record path: raw ring bytes of exec, fork and exit records straight to log
records, without the generic decoder's intermediate dicts; pure, no syscalls.

An exec storm sends three records per process (fork, exec, exit), of three lengths, so the ring walker finds
runs of one record each and the generic path (:mod:`rawbpf.records` builds a dict keyed by C member names,
then :class:`~rawbpf.monitor.shape.Shaper` builds the log record from it) pays its per-run and per-dict costs
for every record. :class:`RunShaper` instead unpacks each record of these kinds with one ``struct.Struct``
compiled from the object's BTF (member offsets and sizes, never written down here) and builds the log record
with ``seq`` first (a placeholder the log writer fills), in the field order :class:`Shaper` gives. The
identity fields (pid to traceparent: ids, comm, cgroup, tty, attribution) are the same in every record of one
process -- its exec and exit, and all the forks of a parent -- so they are built once per distinct identity
bytes and copied, and only the stamp, the kind and the kind's own fields are made per record. A new
process's fields from its cgroup on (tty, origin, session, trace context) are those of its tree, kept by their
bytes too; an exec's own fields are kept by the bytes they come from (a busy tree runs the same few command
lines in the same directory; with redaction on, never a command line that may hold a secret). Every other
kind, and any record shorter than its fixed part, takes the generic path record by record, so both paths make
the same records (tests/unit/test_monitor_shape_runs.py proves it over random records).
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from rawbpf.btf import Kind
from rawbpf.monitor.redact import argv_may_hold_secret, redact_argv
from rawbpf.monitor.shape import AUID_UNSET, ENV_NAMES, ENV_TRUNCATED, TICK_NS, Shaper, absolute, tty_name

__tier__ = "pure"

Record = Dict[str, Any]
Run = Tuple[int, int, int, int]

HDR_SIZE = 8  # the ring's record header, before each payload
_INT = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h", (4, False): "I", (4, True): "i",
        (8, False): "Q", (8, True): "q"}

#: the members every record starts with (struct rec_header), in their order in the struct
HEADER = ("type", "flags", "ts", "pid", "tid", "ppid", "uid", "root_pid", "depth", "comm", "start",
          "parent_start", "root_start", "cgroup_id", "euid", "auid", "tty", "attr.origin", "attr.session_id",
          "attr.traceparent")
EXEC = ("match", "argv_len", "argv_truncated", "env", "claude_pid", "cwd_len", "cwd_truncated", "cwd",
        "filename")
FORK = ("child_pid",)
EXIT = ("exit_code", "signal", "core_dumped", "duration_ns")
FILE = ("op", "ret", "count", "fflags", "mode", "owner_uid", "owner_gid", "ino", "dev", "name1_len",
        "walk1_len", "name2_len", "walk2_len", "gen")


def member(btf: Any, struct_id: int, path: str) -> Tuple[int, Any]:
    """``(byte offset, resolved type)`` of member ``path`` (``a.b`` for member b of struct member a)."""
    off, t = 0, btf.resolved(struct_id)
    for part in path.split("."):
        m = next((m for m in getattr(t, "members", ()) or () if m.name == part), None)
        if m is None or m.bitfield_size or m.bits_offset % 8:
            raise LookupError(path)
        off += m.bits_offset // 8
        t = btf.resolved(m.type)
    return off, t


def layout(btf: Any, struct_id: int, names: Sequence[str]) -> struct.Struct:
    """A native-order struct reading ``names`` (integers, enums, byte arrays) from a record's start, in this
    order; LookupError when a member is missing or the members are not in increasing offset order."""
    fmt, pos = ["="], 0
    for name in names:
        if ".." in name:  # the raw bytes from member a's start to member b's end
            first, last = name.split("..")
            off = member(btf, struct_id, first)[0]
            end, t = member(btf, struct_id, last)
            end += _byte_size(btf, t)
            if off < pos or end <= off:
                raise LookupError(f"{name}: out of order")
            if off > pos:
                fmt.append(f"{off - pos}x")
            fmt.append(f"{end - off}s")
            pos = end
            continue
        off, t = member(btf, struct_id, name)
        if off < pos:
            raise LookupError(f"{name}: out of order")
        if t.kind in (Kind.INT, Kind.ENUM, Kind.ENUM64) and (t.size, bool(t.signed)) in _INT:
            code, size = _INT[(t.size, bool(t.signed))], t.size
        elif t.kind == Kind.ARRAY and t.array is not None and btf.size_of(t.array.type) == 1:
            size = t.array.nelems
            code = f"{size}s"
        else:
            raise LookupError(f"{name}: not an integer or a byte array")
        if off > pos:
            fmt.append(f"{off - pos}x")
        fmt.append(code)
        pos = off + size
    return struct.Struct("".join(fmt))


def _byte_size(btf: Any, t: Any) -> int:
    """Bytes of a resolved member type: an integer or enum, or an array (of anything sized)."""
    if t.kind == Kind.ARRAY and t.array is not None:
        return int(t.array.nelems * btf.size_of(t.array.type))
    if t.kind in (Kind.INT, Kind.ENUM, Kind.ENUM64):
        return int(t.size)
    raise LookupError("not an integer or an array")


def _cstr(b: bytes) -> str:
    """A C string member: up to the first NUL, utf-8 with replacement characters (as the decoder's)."""
    return b.partition(b"\0")[0].decode("utf-8", "replace")


def _join_cwd(components: bytes) -> str:
    """The working directory from its components, leaf first, NUL-terminated (not marked as cut)."""
    parts = [c for c in components.decode("utf-8", "replace").split("\0") if c]
    parts.reverse()
    return "/" + "/".join(parts)


class _Table(Dict[Any, Any]):
    """A memo of a function of one number (tty names, enum names, cgroup paths). ``keep_none=False``: a
    None answer is asked again next time (a cgroup unknown now may be found by the next scan).
    ``refill=True``: a full memo is emptied and filled again (keys that keep coming, such as the parents of
    a long run's processes) rather than kept as it is."""

    def __init__(self, fn: Callable[[Any], Any], keep_none: bool = True, refill: bool = False) -> None:
        super().__init__()
        self.fn = fn
        self.keep_none = keep_none
        self.refill = refill

    def __missing__(self, key: Any) -> Any:
        value = self.fn(key)
        if len(self) >= 4096 and self.refill:
            self.clear()
        if len(self) < 4096 and (value is not None or self.keep_none):
            self[key] = value
        return value


#: exec tails kept (see RunShaper), and the longest kept (bytes): about a megabyte at most
_TAIL_MEMO_MAX = 512
_TAIL_MEMO_BYTES = 2048


def argv_list(raw: bytes, redact: bool) -> Tuple[List[str], bool]:
    """An exec record's argv bytes (NUL-separated, the last NUL optional) as the list of arguments, redacted
    when ``redact``, and whether the list may be kept for the same bytes seen again (not when redaction is on
    and the text may hold a secret: no secret is held after its record is made). The bytes are decoded whole
    (a NUL never belongs to a multi-byte sequence, so this equals decoding each argument); redaction runs
    only when the text has something a secret pattern or option needs."""
    text = raw.decode("utf-8", "replace")
    if not text:
        return [], True
    argv = (text[:-1] if text[-1] == "\0" else text).split("\0")
    if redact and argv_may_hold_secret(text):
        return redact_argv(argv)[0], False
    return argv, True


#: the header's log fields of one process's records, built once per identity (see RunShaper): ``ts`` and a
#: session learnt from the root's transcript are set per record; the fields from ``auid`` on come from the
#: tree's part (_TREE_ITEMS)
_HEAD_ITEMS = (
    "'seq': 0, 'ts': 0, 'type': '', 'pid': pid, 'tid': tid, 'ppid': ppid, 'uid': uid, "
    "'euid': f[2], 'root_pid': root, 'depth': depth, 'comm': _str[comm], "
    "'seen_at_start': flags & 1 != 0, "
    "'exec_id': f'{_boot}-{pid}-{start // _TICK}' if pid else None, "
    "'parent_exec_id': _eid[ppid, pstart] if ppid else None, "
    "'root_exec_id': _eid[root, rstart] if root else None"
)
#: the members of one process's own (OWN) and of the part its whole tree usually shares (TREE, from the
#: cgroup on), in the struct's order
OWN = HEADER[3:13]
TREE = HEADER[13:]
_OWN_NAMES = "pid, tid, ppid, uid, root, depth, comm, start, pstart, rstart"
_TREE_NAMES = "cg, euid, auid, tty, origin, session, trace"
_TREE_ITEMS = (
    "'auid': None if auid == _AUID_UNSET else auid, 'tty': _tty[tty], "
    "'cgroup': cgroup, 'origin': _origin[origin], 'session_id': sess or None, "
    "'traceparent': _str[trace] or None"
)
#: the members after the kind, flags and stamp that every record of one process repeats (the memo's key)
IDENTITY = f"{HEADER[3]}..{HEADER[-1]}"
#: identities kept (about 1.2 KB each): a process's records come close together, so a few drains' worth
_MEMO_MAX = 1024

#: kind → (its members' local names, statements, (log field, expression) pairs set on ``r``, what to return)
_KIND_SRC: Dict[str, Tuple[str, str, List[Tuple[str, str]], str]] = {
    "fork": ("child_pid", "", [("child_pid", "child_pid")], "r"),
    "exit": ("exit_code, signal, core_dumped, duration_ns", "",
             [("exit_code", "exit_code"), ("signal", "signal"), ("core_dumped", "core_dumped != 0"),
              ("duration_ns", "duration_ns")], "r"),
    # the exec's own fields come from its tail, the bytes from ``match`` to the end of the argv actually
    # used (argv_len of them, zero-filled past the record's end): made once per distinct tail (a busy tree
    # runs the same few command lines in the same directory) and copied, lists included
    "exec": ("match, argv_len, argv_cut, env, claude_pid, cwd_len, cwd_cut, cwd_raw, filename", """\
    end = _ARGV_OFF + (argv_len if argv_len < _ARGV_MAX else _ARGV_MAX)
    if end <= length:
        key = bytes(buf[p + _TAIL_OFF:p + end])
    else:
        key = bytes(buf[p + _TAIL_OFF:p + length]).ljust(end - _TAIL_OFF, b"\\0")
    tail = _tails.get(key)
    if tail is None:
        argv, keep = _argv_list(key[_ARGV_OFF - _TAIL_OFF:], _REDACT)
        cwd = _cwd[cwd_raw[:cwd_len]]
        if cwd_cut:
            cwd = "\\u2026" + cwd
        fname = filename.partition(b"\\0")[0].decode("utf-8", "replace")
        if not fname.startswith("/"):
            fname = _absolute(fname, cwd)
        tail = {"filename": fname, "argv": argv, "argv_truncated": argv_cut != 0, "match": _match[match],
                "cwd": cwd, "cwd_truncated": cwd_cut != 0, "claude_env": _env[env],
                "claude_env_truncated": env & _ENV_TRUNCATED != 0, "claude_pid": claude_pid or None}
        if keep and len(key) <= _TAIL_MEMO_BYTES:
            if len(_tails) >= _TAIL_MEMO_MAX:
                _tails.clear()
            _tails[key] = tail
    r.update(tail)
    r["argv"] = tail["argv"][:]
    r["claude_env"] = tail["claude_env"][:]
""", [], "r"),
    # data: the names and dentry chains, the first name1_len + walk1_len + name2_len + walk2_len bytes (at
    # most the array; zero-filled past the record's end); None when the record is dropped (a read no watch
    # glob matches)
    "file": ("op, ret, count, fflags, mode, ouid, ogid, ino, dev, n1, w1, n2, w2, gen", """\
    need = n1 + w1 + n2 + w2
    if need > _DATA_MAX:
        need = _DATA_MAX
    a = p + _DATA_OFF
    have = length - _DATA_OFF
    if need <= have:
        data = bytes(buf[a:a + need])
    else:
        data = bytes(buf[a:a + max(0, have)]).ljust(need, b"\\0")
""", [], "_file_fields(r, _op[op], fflags, n1, w1, n2, w2, ret, count, mode, ouid, ogid, ino, dev, gen, "
           "data)"),
}


class RunShaper:
    """Callable ``(buf, runs, now) -> [record]``: the log records of one drain of the monitor's ring, each a
    dict starting with ``seq`` (0 here; the writer numbers them), as ``shaper`` would make them from what
    ``decoder`` decodes. Records ``shaper`` drops are left out, and a record it turns into several (a TCP
    capture of two DNS messages) gives them all; an exit of a process with a DNS-over-TCP message half
    received is preceded by that message's record, as ``shaper`` gives it.

    Each fast kind gets a function generated at start-up (like the generic decoder's), with the record's
    members unpacked into locals; the header fields come from a memo keyed by the identity bytes (a session
    known only from the root's transcript is looked up per record, and a header whose cgroup path is not
    known yet is not kept); lookups that depend on one number (tty names, cgroup paths, enum names, the
    ``claude_env`` list) are memoised.
    """

    def __init__(self, shaper: Shaper, decoder: Any) -> None:
        self.shaper = shaper
        self.decoder = decoder
        #: discriminant value → (function, minimum record length)
        self._fast: Dict[int, Tuple[Callable[..., Record], int]] = {}
        self._disc = struct.Struct("=I")
        self._ts_at = -1
        #: identity bytes (IDENTITY) → the header fields of that process's records (shared by the kinds: a
        #: process's exec and exit repeat them, a parent's forks too); emptied when _MEMO_MAX are kept
        self._memo: Dict[bytes, Tuple[int, Record, bool, int]] = {}
        #: the identity's bytes from the cgroup on → that part's fields (see _compile); shared likewise
        self._trees: Dict[bytes, Tuple[Record, bool, int]] = {}
        cat = shaper.catalog
        self._exit = next((v for v, k in cat.kinds.items() if k == "exit"), None)
        kinds = getattr(decoder, "kinds", None) or {}
        if getattr(decoder, "disc_off", 0) != 0 or getattr(decoder, "disc_size", 4) != 4:
            kinds = {}  # the kind is not the u32 at the record's start: everything takes the generic path
        for value, dec in kinds.items():
            kind = cat.kinds.get(value)
            if kind not in _KIND_SRC or dec.kind != kind:
                continue
            try:
                fn, size = self._compile(dec, kind)
            except LookupError:
                continue  # a layout this path does not know: the generic path decodes it
            self._fast[value] = (fn, size)

    def _compile(self, dec: Any, kind: str) -> Tuple[Callable[..., Record], int]:
        btf, sid = dec.btf, dec.type_id
        names, body, items, result = _KIND_SRC[kind]
        extra = {"exec": EXEC, "fork": FORK, "exit": EXIT, "file": FILE}[kind]
        st = layout(btf, sid, (*HEADER[:3], IDENTITY, *extra))  # type, flags, ts, identity bytes, the kind's
        self._ts_at = member(btf, sid, "ts")[0]
        sh = self.shaper
        origins = _enum_of(btf, sid, "attr.origin")
        ns: Dict[str, Any] = {
            "_st": st, "_memo": self._memo, "_MEMO_MAX": _MEMO_MAX,
            "_files": sh.files, "_boot": sh._boot, "_TICK": TICK_NS, "_AUID_UNSET": AUID_UNSET,
            "_tty": _Table(tty_name), "_str": _Table(_cstr),
            # the exec ids of parents and roots, shared by their children's records
            "_eid": _Table(lambda k: f"{sh._boot}-{k[0]}-{k[1] // TICK_NS}", refill=True),
            "_cgroup": _Table(sh.cgroup_path, keep_none=False) if sh.cgroup_path else _Table(lambda _: None),
            "_origin": _Table(lambda v: sh.origin_name(origins.get(v, v))),
        }
        if kind == "exec":
            argv_off, argv_t = member(btf, sid, "argv")
            if argv_t.kind != Kind.ARRAY or argv_t.array is None:
                raise LookupError("argv")
            if argv_off < st.size or argv_off + argv_t.array.nelems > dec.size:
                raise LookupError("argv")
            matches = _enum_of(btf, sid, "match")
            ns.update(_cwd=_Table(_join_cwd), _ARGV_OFF=argv_off, _ARGV_MAX=argv_t.array.nelems,
                      _TAIL_OFF=member(btf, sid, EXEC[0])[0], _tails={}, _TAIL_MEMO_MAX=_TAIL_MEMO_MAX,
                      _TAIL_MEMO_BYTES=_TAIL_MEMO_BYTES, _REDACT=sh.redact, _argv_list=argv_list,
                      _absolute=absolute,
                      _match=_Table(lambda v: sh._match(matches.get(v, v))),
                      _env=_Table(lambda env: [n for bit, n in ENV_NAMES.items() if env & bit]),
                      _ENV_TRUNCATED=ENV_TRUNCATED)
        if kind == "file":
            data_off, data_t = member(btf, sid, "data")
            if data_t.kind != Kind.ARRAY or data_t.array is None or data_off < st.size:
                raise LookupError("data")
            ops = _enum_of(btf, sid, "op")
            ns.update(_DATA_OFF=data_off, _DATA_MAX=data_t.array.nelems, _file_fields=sh.files.file_fields,
                      _op=_Table(lambda v: sh.files.op_name(ops.get(v, v))))
        # _head: the fields every record of one process repeats, as a dict to copy, with whether the session
        # is to be looked up per record (the root's, learnt from its transcript meanwhile) and the root;
        # not kept while a cgroup's path is unknown (a later scan may find it). _tree: the fields from the
        # cgroup on (as a dict to add, whether the session is looked up per record, euid), kept by those
        # bytes, which the processes of one tree share
        assert len(OWN) + len(TREE) == len(HEADER) - 3 and len(_TREE_NAMES.split(", ")) == len(TREE)
        ns.update(_ost=layout(btf, sid, OWN), _tst=layout(btf, sid, TREE), _trees=self._trees,
                  _TREE_AT=member(btf, sid, TREE[0])[0] - member(btf, sid, OWN[0])[0])
        src = (f"def _tree(buf, p, key):\n"
               f"    ({_TREE_NAMES},) = _tst.unpack_from(buf, p)\n"
               f"    sess = _str[session]\n"
               f"    cgroup = _cgroup[cg] if cg else None\n"
               f"    f = ({{{_TREE_ITEMS}}}, not sess, euid)\n"
               f"    if cg and cgroup is None:\n"
               f"        return f, False\n"
               f"    if len(_trees) >= _MEMO_MAX:\n"
               f"        _trees.clear()\n"
               f"    _trees[key] = f\n"
               f"    return f, True\n"
               f"def _head(buf, p, flags, ident):\n"
               f"    ({_OWN_NAMES},) = _ost.unpack_from(buf, p)\n"
               f"    key = ident[_TREE_AT:]\n"
               f"    f = _trees.get(key)\n"
               f"    keep = True\n"
               f"    if f is None:\n"
               f"        f, keep = _tree(buf, p, key)\n"
               f"    h = {{{_HEAD_ITEMS}}}\n"
               f"    h.update(f[0])\n"
               f"    t = (flags & 1, h, f[1], root)\n"
               f"    if not keep:\n"
               f"        return t\n"
               f"    if len(_memo) >= _MEMO_MAX:\n"
               f"        _memo.clear()\n"
               f"    _memo[ident] = t\n"
               f"    return t\n"
               f"def _f(buf, p, length, tsoff):\n"
               f"    (_type, flags, ts, ident, {names},) = _st.unpack_from(buf, p)\n"
               f"    t = _memo.get(ident)\n"
               f"    if t is None or t[0] != (flags & 1):\n"
               f"        t = _head(buf, p, flags, ident)\n"
               f"    r = t[1].copy()\n"
               f"    r['ts'] = ts + tsoff\n"
               f"    r['type'] = {kind!r}\n"
               f"    if t[2]:\n"
               f"        known = _files.sessions.get(t[3])\n"
               f"        r['session_id'] = known['session_id'] if known else None\n"
               f"{body}"
               + "".join(f"    r[{key!r}] = {expr}\n" for key, expr in items)
               + f"    return {result}\n")
        exec(compile(src, f"<rawbpf monitor {kind}>", "exec"), ns)
        return ns["_f"], st.size

    # -- the drain

    def __call__(self, buf: Any, runs: Sequence[Run], now: int) -> List[Record]:
        out: List[Record] = []
        append = out.append
        fast = self._fast
        exit_kind, held = self._exit, self.shaper.files.tcp.held
        tsoff: Optional[int] = None
        mv = memoryview(buf)
        u32: Any = None  # a record's kind is its first u32: read through a u32 view of 4-aligned records
        if mv.nbytes % 4 == 0 and mv.format in ("B", "b", "c") and mv.c_contiguous:
            u32 = mv.cast("B").cast("I")
        disc = self._disc.unpack_from
        try:
            for off, length, count, stride in runs:
                p = off + HDR_SIZE
                words = u32 if not (off | stride) & 3 else None
                while count:
                    count -= 1
                    if length < 4:
                        entry = None
                    else:
                        kind = words[p >> 2] if words is not None else disc(buf, p)[0]
                        entry = fast.get(kind)
                    if entry is not None and length >= entry[1]:
                        if tsoff is None:
                            tsoff = self._tsoff(buf, p)
                        rec = entry[0](buf, p, length, tsoff)
                        if kind == exit_kind and held:  # streams of this process end with it
                            out.extend(_stamped(self.shaper.files.end_process(rec["pid"]), now))
                        if rec is not None:  # (a file read no watch glob matches is dropped)
                            append(rec)
                    else:
                        out.extend(self._generic(buf, (p - HDR_SIZE, length, 1, stride), now))
                        tsoff = None  # the generic path may have settled the clock
                    p += stride
        finally:
            words = None
            if u32 is not None:
                u32.release()
            mv.release()
        return out

    def _tsoff(self, buf: Any, p: int) -> int:
        tb = self.decoder.time_base
        if tb.clock == "auto":  # the first stamp decides the kernel clock, as in the generic decoder
            tb.settle(struct.unpack_from("=Q", buf, p + self._ts_at)[0])
        return int(tb.offset) + self.shaper.boot_offset_ns

    def _generic(self, buf: Any, run: Run, now: int) -> List[Record]:
        rec = self.decoder.decode_runs(buf, [run], 0, now)[0]
        del rec["seq"]
        shaped = self.shaper(rec)
        if shaped is None:
            return []
        return _stamped(shaped if isinstance(shaped, list) else [shaped], now)


def _stamped(records: List[Record], now: int) -> List[Record]:
    """Records of the generic path as the writer takes them: ``seq`` first, then ``ts`` (the record's)."""
    out = []
    for one in records:
        r: Record = {"seq": 0, "ts": now}
        r.update(one)
        out.append(r)
    return out


def _enum_of(btf: Any, struct_id: int, path: str) -> Dict[int, str]:
    """Value → decoded label of the enum member ``path`` (what the generic decoder gives for it)."""
    from rawbpf.records import enum_labels

    _, t = member(btf, struct_id, path)
    return enum_labels(t) if t.kind in (Kind.ENUM, Kind.ENUM64) else {}
