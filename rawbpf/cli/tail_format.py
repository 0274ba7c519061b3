"""The readable line ``rawbpf tail`` prints for a record: no syscalls, so it is tested against golden files.

One line per record, in aligned columns: time (local or UTC, ms), ``pid[/tid]``, ``comm``, the record type,
and a summary written for people (``exec  git commit -qm first  (cwd ~/repo)``, ``connect 160.79.104.10:443
anthropic-api``, ``exit  killed by SIGKILL (core)``). Numbers a person would have to look up are named (errno
and signal names, durations in ms/s); fields that only restate a default (``seen_at_start: false``, a null
``match``) are left out; ``--json`` is the place for every field exactly. Every text that came from a traced
process or a file goes through :func:`rawbpf.termsafe.escape` before anything (padding, colour) is added.
"""

from __future__ import annotations

import datetime as _dt
import errno as _errno
import re
import shlex
import signal as _signal
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional

from rawbpf.cli.report import duration, short_command
from rawbpf.termsafe import escape

__tier__ = "files"

__all__ = ["TextFormat", "KNOWN_TYPES", "command_text"]

#: every record type the monitor and the log write (``--type`` accepts these, and any type in the log)
KNOWN_TYPES = ("exec", "exit", "fork", "connect", "connect_result", "rename", "file", "dns", "tls",
               "lost", "crash", "gap", "missing", "header")
# identity fields every monitor record has: shown in the columns or not at all in text
_IDENTITY = {"seq", "ts", "type", "pid", "tid", "ppid", "comm", "uid", "euid", "auid", "root_pid", "depth",
             "flags", "session_id", "traceparent", "origin", "exec_id", "parent_exec_id", "root_exec_id",
             "cwd", "tty", "cgroup", "seen_at_start"}
_EINPROGRESS = -115
_SHELL_SAFE = re.compile(r"[\w@%+=:,./-]+\Z", re.ASCII)
_PID_W, _COMM_W, _TYPE_W = 11, 15, 7
_CONN_MEMORY = 4096  # connect labels kept for the connect_result lines that follow

# SGR colours
_DIM, _BOLD, _RED, _GREEN, _YELLOW, _BLUE, _MAGENTA, _CYAN = "2", "1", "31", "32", "33", "34", "35", "36"
_TYPE_COLOUR = {"exec": _GREEN, "fork": _DIM, "connect": _BLUE, "connect_result": _BLUE, "rename": _DIM,
                "file": _YELLOW, "dns": _MAGENTA, "tls": _MAGENTA, "exit": "", "header": _DIM}
_LOG_TYPES = {"lost", "crash", "gap", "missing"}


def _arg(a: str) -> str:
    text = escape(a)
    return text if _SHELL_SAFE.match(text) else shlex.quote(text)


def command_text(argv: List[Any], filename: Optional[str] = None) -> str:
    """A command line as a shell would take it back (quoted where needed, control characters escaped); the
    command Claude Code's Bash tool wraps in ``bash -c '... eval '…' ...'`` is shown as ``bash -c '…'``."""
    args = [a if isinstance(a, str) else str(a) for a in argv]
    if len(args) >= 3 and args[1] == "-c" and args[0].endswith(("bash", "sh")) and "eval '" in args[2]:
        short = short_command(args)
        if not short.startswith(args[0]):  # unwrapped: short_command names the shell by its basename
            return escape(short)
    if not args:
        return escape(filename) if filename else "?"
    return " ".join(_arg(a) for a in args)


class TextFormat:
    """Turns records into readable lines; keeps a little state (connections by ``conn_id``, so a
    ``connect_result`` names its peer). ``home_of(uid)`` gives a user's home directory for ``~``
    abbreviation (None: paths stay absolute)."""

    def __init__(self, *, utc: bool = False, color: bool = False, tree: bool = False,
                 home_of: Optional[Callable[[int], Optional[str]]] = None) -> None:
        self.utc, self.color, self.tree = utc, color, tree
        self.home_of = home_of
        self._conns: OrderedDict[Any, str] = OrderedDict()

    # -- pieces

    def _c(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and code and text else text

    def time(self, ts: Any) -> str:
        if not isinstance(ts, int):
            return "-".ljust(13 if self.utc else 12)
        tz = _dt.timezone.utc if self.utc else None
        d = _dt.datetime.fromtimestamp(ts // 1_000_000_000, tz)
        text = d.strftime("%H:%M:%S") + f".{(ts // 1_000_000) % 1000:03d}"
        return text + "Z" if self.utc else text

    def path(self, p: Any, uid: Any) -> str:
        """A path with the owner's home as ``~``, escaped."""
        if not isinstance(p, str):
            return "?"
        home = self.home_of(uid) if (self.home_of is not None and isinstance(uid, int)) else None
        if home and home != "/" and (p == home or p.startswith(home.rstrip("/") + "/")):
            p = "~" + p[len(home.rstrip("/")):]
        return escape(p)

    def peer(self, rec: Dict[str, Any]) -> str:
        """``160.79.104.10:443``, ``[::1]:53`` or ``unix:/run/x.sock``."""
        addr, port, fam = rec.get("addr"), rec.get("port"), rec.get("family")
        if fam == "unix":
            return "unix:" + (escape(str(addr)) if addr else "?")
        if addr is None:
            return "?"
        a = escape(str(addr))
        if fam == "inet6" or ":" in a:
            a = f"[{a}]"
        return f"{a}:{port}" if isinstance(port, int) else a

    # -- the line

    def line(self, rec: Dict[str, Any]) -> str:
        rtype = str(rec.get("type", "?"))
        pid, tid, comm = rec.get("pid"), rec.get("tid"), rec.get("comm")
        who = str(pid) if pid is not None else "-"  # an exit: the process, not its last thread
        if isinstance(tid, int) and isinstance(pid, int) and tid != pid and rtype != "exit":
            who += f"/{tid}"
        comm_text = escape(str(comm)) if comm not in (None, "") else "-"
        summary, colour = self.summary(rec)
        indent = ""
        if self.tree and isinstance(rec.get("depth"), int) and rec["depth"] > 0:
            indent = "  " * (rec["depth"] - 1) + "└ "
        tname = escape(rtype)
        head = (f"{self._c(_DIM, self.time(rec.get('ts')))}  {escape(who):<{_PID_W}} "
                f"{self._c(_CYAN, comm_text.ljust(_COMM_W))}  {indent}")
        return (head + self._c(colour, tname.ljust(_TYPE_W)) + " " + summary).rstrip()

    def summary(self, rec: Dict[str, Any]) -> tuple[str, str]:
        """The text after the type, and the colour of the type."""
        rtype = rec.get("type")
        fn = getattr(self, f"_s_{rtype}", None) if isinstance(rtype, str) and rtype in KNOWN_TYPES else None
        colour = _TYPE_COLOUR.get(rtype, "") if isinstance(rtype, str) else ""
        if rtype in _LOG_TYPES:
            colour = f"{_BOLD};{_RED}"
        if fn is None:
            return self._generic(rec), colour
        text, override = fn(rec)
        return text, override if override is not None else colour

    def _generic(self, rec: Dict[str, Any], skip: Any = ()) -> str:
        parts = []
        for k, v in rec.items():
            if k in _IDENTITY or k in skip or v is None or v is False or v == "" or v == [] or v == {}:
                continue
            parts.append(escape(str(k)) if v is True else f"{escape(str(k))}={_value(v)}")
        return " ".join(parts)

    def _tags(self, rec: Dict[str, Any]) -> str:
        tags = []
        origin = rec.get("origin")
        if origin in ("tool", "hook", "mcp"):
            tags.append(self._c(_BOLD, f"[{origin}]"))
        if rec.get("seen_at_start"):
            tags.append("[running at start]")
        return ("  " + " ".join(tags)) if tags else ""

    # -- per type (text, colour or None for the type's own)

    def _s_exec(self, rec: Dict[str, Any]) -> tuple[str, Optional[str]]:
        argv = rec.get("argv")
        fn = rec.get("filename") if isinstance(rec.get("filename"), str) else None
        text = command_text(argv if isinstance(argv, list) else [], fn)
        if rec.get("argv_truncated"):
            text += " …"
        if rec.get("origin") == "claude" and self.color:
            text = self._c(_DIM, text)
        if isinstance(rec.get("cwd"), str):
            text += f"  (cwd {self.path(rec['cwd'], rec.get('uid'))})"
        if rec.get("match"):
            text += f"  (Claude: matched by {escape(str(rec['match']))})"
        return text + self._tags(rec), None

    def _s_exit(self, rec: Dict[str, Any]) -> tuple[str, Optional[str]]:
        sig = rec.get("signal")
        if isinstance(sig, int) and sig:
            text = f"killed by {signal_name(sig)}" + (" (core)" if rec.get("core_dumped") else "")
            colour: Optional[str] = _RED
        else:
            code = rec.get("exit_code")
            text = f"exit {code}" if code is not None else "exit"
            colour = _RED if isinstance(code, int) and code != 0 else None
        if isinstance(rec.get("duration_ns"), int) and rec["duration_ns"] > 0:
            text += f"  after {_duration(rec['duration_ns'])}"
        return self._c(colour or "", text) + self._tags(rec), colour

    def _s_fork(self, rec: Dict[str, Any]) -> tuple[str, Optional[str]]:
        return f"child {rec.get('child_pid', '?')}", None

    def _s_connect(self, rec: Dict[str, Any]) -> tuple[str, Optional[str]]:
        peer = self.peer(rec)
        if rec.get("conn_id") is not None:
            self._conns[rec["conn_id"]] = peer
            if len(self._conns) > _CONN_MEMORY:
                self._conns.popitem(last=False)
        text = peer
        for k in ("host", "endpoint"):
            if rec.get(k):
                text += " " + escape(str(rec[k]))
        ret = rec.get("ret")
        colour = None
        if isinstance(ret, int) and ret not in (0, _EINPROGRESS):
            text += " " + errno_name(ret)
            colour = _RED
        return text + self._tags(rec), colour

    def _s_connect_result(self, rec: Dict[str, Any]) -> tuple[str, Optional[str]]:
        result = str(rec.get("result") or (errno_name(rec["error"]) if rec.get("error") else "?"))
        ok = result == "established"
        text = self._c(_GREEN if ok else _RED, escape(result))
        if isinstance(rec.get("latency_ns"), int):
            text += f" {_duration(rec['latency_ns'])}"
        peer = self.peer(rec) if rec.get("addr") is not None else self._conns.get(rec.get("conn_id"))
        if peer:
            text += f"  {peer}"
        for k in ("host", "endpoint"):
            if rec.get(k):
                text += " " + escape(str(rec[k]))
        return text, None

    def _s_rename(self, rec: Dict[str, Any]) -> tuple[str, Optional[str]]:
        old, new = rec.get("old_comm"), rec.get("new_comm")
        text = f"{_arg(str(old)) if old is not None else '?'} → {_arg(str(new)) if new is not None else '?'}"
        if rec.get("thread"):
            text += f"  (thread {rec.get('tid', '?')})"
        if rec.get("match"):
            text += f"  (Claude: matched by {escape(str(rec['match']))})"
        return text, None

    def _s_file(self, rec: Dict[str, Any]) -> tuple[str, Optional[str]]:
        op = rec.get("op")
        if not isinstance(op, str) or "path" not in rec:
            return self._generic(rec), None
        uid = rec.get("uid")
        text = f"{escape(op)} {self.path(rec.get('path'), uid)}"
        if rec.get("path2"):
            text += f" → {self.path(rec['path2'], uid)}"
        if isinstance(rec.get("mode"), int):
            text += f" {rec['mode']:04o}"
        if op == "chown":
            owner = rec.get("owner_uid")
            group = rec.get("owner_gid")
            text += f" {owner if owner is not None else '-'}:{group if group is not None else '-'}"
        ret = rec.get("ret")
        colour = None
        if isinstance(ret, int) and ret < 0:
            text += " " + self._c(_RED, errno_name(ret))
        if isinstance(rec.get("count"), int) and rec["count"] > 1:
            text += f" ({rec['count']} times)"
        if rec.get("sensitive"):
            text += " " + self._c(f"{_BOLD};{_RED}", "(sensitive)")
            colour = f"{_BOLD};{_RED}"
        if rec.get("transcript"):
            text += " (transcript)"
        return text + self._tags(rec), colour

    def _s_dns(self, rec: Dict[str, Any]) -> tuple[str, Optional[str]]:
        qname = rec.get("qname")
        if not isinstance(qname, str):
            return self._generic(rec), None
        q = escape(qname or ".")
        qtype = escape(str(rec["qtype"])) if rec.get("qtype") else ""
        answers = rec.get("answers")
        if rec.get("response") is False:
            return f"{q} {qtype}?".replace(" ?", "?"), None
        text = f"{q} {qtype}".rstrip()
        rcode = rec.get("rcode")
        if rcode and rcode != "NOERROR":
            return text + " " + self._c(_RED, escape(str(rcode))), None
        shown = [_answer(a) for a in answers] if isinstance(answers, list) else []
        if shown:
            text += " → " + ", ".join(shown[:4]) + (f", +{len(shown) - 4}" if len(shown) > 4 else "")
        elif isinstance(answers, list):
            text += " → (no answer)"
        return text, None

    def _s_tls(self, rec: Dict[str, Any]) -> tuple[str, Optional[str]]:
        sni = rec.get("sni")
        text = f"server name {escape(str(sni))}" if sni else "no server name"
        alpn = rec.get("alpn")
        if isinstance(alpn, list) and alpn:
            text += " (" + ", ".join(escape(str(a)) for a in alpn) + ")"
        if rec.get("addr") is not None:
            text += f"  {self.peer(rec)}"
        return text, None

    def _s_lost(self, rec: Dict[str, Any]) -> tuple[str, Optional[str]]:
        n = rec.get("count")
        text = f"{n} record{'' if n == 1 else 's'}" if isinstance(n, int) else "records"
        why = [escape(str(rec[k])) for k in ("reason", "source", "ring", "error") if rec.get(k)]
        if why:
            text += " (" + ", ".join(why) + ")"
        return text, None

    def _s_missing(self, rec: Dict[str, Any]) -> tuple[str, Optional[str]]:
        n = rec.get("count")
        text = f"{n} record{'' if n == 1 else 's'}" if isinstance(n, int) else "records"
        if rec.get("reason"):
            text += f" {escape(str(rec['reason']))}"
        if rec.get("after_seq") is not None and rec.get("next_seq") is not None:
            text += f" (seq {rec['after_seq']} to {rec['next_seq']})"
        return text, None

    def _s_crash(self, rec: Dict[str, Any]) -> tuple[str, Optional[str]]:
        text = f"writer {rec.get('writer_pid', '?')} ended without closing the log"
        if isinstance(rec.get("since"), int) and isinstance(rec.get("until"), int):
            text += f"; nothing consumed from {self.time(rec['since'])} to {self.time(rec['until'])}"
        if rec.get("kernel_drops"):
            text += f"; the kernel dropped {rec['kernel_drops']}"
        if rec.get("torn_bytes"):
            text += f"; {rec['torn_bytes']} torn bytes skipped"
        return text, None

    def _s_gap(self, rec: Dict[str, Any]) -> tuple[str, Optional[str]]:
        text = f"{rec.get('bytes', '?')} damaged bytes skipped in {escape(str(rec.get('file', '?')))}"
        if rec.get("offset") is not None:
            text += f" at offset {rec['offset']}"
        if rec.get("last_seq") is not None:
            text += f" (after seq {rec['last_seq']})"
        return text, None


def errno_name(value: int) -> str:
    """``-111`` → ``ECONNREFUSED`` (unknown numbers as they are)."""
    return _errno.errorcode.get(abs(value), str(value))


def signal_name(value: int) -> str:
    """``9`` → ``SIGKILL`` (unknown numbers as ``signal N``)."""
    try:
        return _signal.Signals(value).name
    except ValueError:
        return f"signal {value}"


def _duration(ns: int) -> str:
    """``23 ms``, ``4.2 s``; below 0.1 ms in µs, where ms would round to nothing."""
    return f"{ns / 1000:.0f} µs" if ns < 100_000 else duration(ns)


def _answer(a: Any) -> str:
    if isinstance(a, dict):
        data, atype = a.get("data"), a.get("type")
        text = escape(str(data)) if data is not None else "?"
        return f"{escape(str(atype))} {text}" if atype and atype not in ("A", "AAAA") else text
    return escape(str(a))


def _value(v: Any) -> str:
    if isinstance(v, bytes):
        return v.hex() if v else "''"
    if isinstance(v, str):
        text = escape(v)  # no control character reaches the terminal; backslashes are escaped
        return '"' + text.replace('"', '\\"') + '"' if (not text or re.search(r"[\s\"=]", text)) else text
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{escape(str(k))}={_value(x)}" for k, x in v.items()) + "}"
    if v is True or v is False or v is None:
        return {True: "true", False: "false", None: "null"}[v]
    return escape(str(v))
