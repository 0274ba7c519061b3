"""libbpf-compatible program section names → program type, expected attach type and attach target; pure.

An executable ELF section's name says what kind of program it holds, in the same convention libbpf uses:
``tp/syscalls/sys_enter_execve`` is a tracepoint program for ``syscalls:sys_enter_execve``. Prefixes ending
in ``+`` in libbpf's table match the bare name or ``name/extra``; the rest must match exactly (or, for the
few that take an argument such as ``xdp/devmap``, by their full spelling). Sections this kernel cannot
attach (kprobes, fentry, LSM, …) are still recognised so that inspecting and loading report a precise reason
instead of "unknown section".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from rawbpf.consts import AttachType, ProgType

__tier__ = "pure"

# flags, as libbpf names them
SEC_NONE = 0
SEC_EXP_ATTACH_OPT = 1  # expected_attach_type may be dropped on old kernels
SEC_ATTACHABLE = 2
SEC_ATTACH_BTF = 4  # attach target is a BTF id resolved at load (tp_btf, fentry, lsm, iter)
SEC_SLEEPABLE = 8  # BPF_F_SLEEPABLE
SEC_XDP_FRAGS = 16  # BPF_F_XDP_HAS_FRAGS

BPF_F_XDP_HAS_FRAGS = 1 << 5


@dataclass(frozen=True)
class SecDef:
    """One row of the section table."""

    prefix: str  # as libbpf spells it; a trailing '+' means "bare or with /extra"
    prog_type: ProgType
    expected_attach_type: int
    flags: int
    attach: str  # how rawbpf.attach auto-attaches it: "tracepoint", "raw_tracepoint", "tracing",
    # "uprobe", "uretprobe", "kprobe", "lsm", "iter", "usdt", "" (not auto-attachable)


_T = ProgType
_A = AttachType

SECTION_DEFS: Tuple[SecDef, ...] = (
    SecDef("socket", _T.SOCKET_FILTER, 0, SEC_NONE, ""),
    SecDef("sk_reuseport/migrate", _T.SK_REUSEPORT, _A.SK_REUSEPORT_SELECT_OR_MIGRATE, SEC_ATTACHABLE, ""),
    SecDef("sk_reuseport", _T.SK_REUSEPORT, _A.SK_REUSEPORT_SELECT, SEC_ATTACHABLE, ""),
    SecDef("kprobe+", _T.KPROBE, 0, SEC_NONE, "kprobe"),
    SecDef("uprobe+", _T.KPROBE, 0, SEC_NONE, "uprobe"),
    SecDef("uprobe.s+", _T.KPROBE, 0, SEC_SLEEPABLE, "uprobe"),
    SecDef("kretprobe+", _T.KPROBE, 0, SEC_NONE, "kretprobe"),
    SecDef("uretprobe+", _T.KPROBE, 0, SEC_NONE, "uretprobe"),
    SecDef("uretprobe.s+", _T.KPROBE, 0, SEC_SLEEPABLE, "uretprobe"),
    SecDef("kprobe.multi+", _T.KPROBE, _A.TRACE_KPROBE_MULTI, SEC_NONE, "kprobe"),
    SecDef("kretprobe.multi+", _T.KPROBE, _A.TRACE_KPROBE_MULTI, SEC_NONE, "kretprobe"),
    SecDef("ksyscall+", _T.KPROBE, 0, SEC_NONE, "kprobe"),
    SecDef("kretsyscall+", _T.KPROBE, 0, SEC_NONE, "kretprobe"),
    SecDef("usdt+", _T.KPROBE, 0, SEC_NONE, "usdt"),
    SecDef("tc", _T.SCHED_CLS, 0, SEC_NONE, ""),
    SecDef("classifier", _T.SCHED_CLS, 0, SEC_NONE, ""),
    SecDef("action", _T.SCHED_ACT, 0, SEC_NONE, ""),
    SecDef("tracepoint+", _T.TRACEPOINT, 0, SEC_NONE, "tracepoint"),
    SecDef("tp+", _T.TRACEPOINT, 0, SEC_NONE, "tracepoint"),
    SecDef("raw_tracepoint+", _T.RAW_TRACEPOINT, 0, SEC_NONE, "raw_tracepoint"),
    SecDef("raw_tp+", _T.RAW_TRACEPOINT, 0, SEC_NONE, "raw_tracepoint"),
    SecDef("raw_tracepoint.w+", _T.RAW_TRACEPOINT_WRITABLE, 0, SEC_NONE, "raw_tracepoint"),
    SecDef("raw_tp.w+", _T.RAW_TRACEPOINT_WRITABLE, 0, SEC_NONE, "raw_tracepoint"),
    SecDef("tp_btf+", _T.TRACING, _A.TRACE_RAW_TP, SEC_ATTACH_BTF, "tracing"),
    SecDef("fentry+", _T.TRACING, _A.TRACE_FENTRY, SEC_ATTACH_BTF, "tracing"),
    SecDef("fmod_ret+", _T.TRACING, _A.MODIFY_RETURN, SEC_ATTACH_BTF, "tracing"),
    SecDef("fexit+", _T.TRACING, _A.TRACE_FEXIT, SEC_ATTACH_BTF, "tracing"),
    SecDef("fentry.s+", _T.TRACING, _A.TRACE_FENTRY, SEC_ATTACH_BTF | SEC_SLEEPABLE, "tracing"),
    SecDef("fmod_ret.s+", _T.TRACING, _A.MODIFY_RETURN, SEC_ATTACH_BTF | SEC_SLEEPABLE, "tracing"),
    SecDef("fexit.s+", _T.TRACING, _A.TRACE_FEXIT, SEC_ATTACH_BTF | SEC_SLEEPABLE, "tracing"),
    SecDef("freplace+", _T.EXT, 0, SEC_ATTACH_BTF, ""),
    SecDef("lsm+", _T.LSM, _A.LSM_MAC, SEC_ATTACH_BTF, "lsm"),
    SecDef("lsm.s+", _T.LSM, _A.LSM_MAC, SEC_ATTACH_BTF | SEC_SLEEPABLE, "lsm"),
    SecDef("lsm_cgroup+", _T.LSM, _A.LSM_CGROUP, SEC_ATTACH_BTF, ""),
    SecDef("iter+", _T.TRACING, _A.TRACE_ITER, SEC_ATTACH_BTF, "iter"),
    SecDef("iter.s+", _T.TRACING, _A.TRACE_ITER, SEC_ATTACH_BTF | SEC_SLEEPABLE, "iter"),
    SecDef("syscall", _T.SYSCALL, 0, SEC_SLEEPABLE, ""),
    SecDef("xdp.frags/devmap", _T.XDP, _A.XDP_DEVMAP, SEC_XDP_FRAGS, ""),
    SecDef("xdp/devmap", _T.XDP, _A.XDP_DEVMAP, SEC_ATTACHABLE, ""),
    SecDef("xdp.frags/cpumap", _T.XDP, _A.XDP_CPUMAP, SEC_XDP_FRAGS, ""),
    SecDef("xdp/cpumap", _T.XDP, _A.XDP_CPUMAP, SEC_ATTACHABLE, ""),
    SecDef("xdp.frags", _T.XDP, _A.XDP, SEC_XDP_FRAGS, ""),
    SecDef("xdp", _T.XDP, _A.XDP, SEC_ATTACHABLE | SEC_EXP_ATTACH_OPT, ""),
    SecDef("perf_event", _T.PERF_EVENT, 0, SEC_NONE, ""),
    SecDef("lwt_in", _T.LWT_IN, 0, SEC_NONE, ""),
    SecDef("lwt_out", _T.LWT_OUT, 0, SEC_NONE, ""),
    SecDef("lwt_xmit", _T.LWT_XMIT, 0, SEC_NONE, ""),
    SecDef("lwt_seg6local", _T.LWT_SEG6LOCAL, 0, SEC_NONE, ""),
    SecDef("sockops", _T.SOCK_OPS, _A.CGROUP_SOCK_OPS, SEC_ATTACHABLE | SEC_EXP_ATTACH_OPT, ""),
    SecDef(
        "sk_skb/stream_parser", _T.SK_SKB, _A.SK_SKB_STREAM_PARSER, SEC_ATTACHABLE | SEC_EXP_ATTACH_OPT, ""
    ),
    SecDef(
        "sk_skb/stream_verdict", _T.SK_SKB, _A.SK_SKB_STREAM_VERDICT, SEC_ATTACHABLE | SEC_EXP_ATTACH_OPT, ""
    ),
    SecDef("sk_skb", _T.SK_SKB, 0, SEC_NONE, ""),
    SecDef("sk_msg", _T.SK_MSG, _A.SK_MSG_VERDICT, SEC_ATTACHABLE | SEC_EXP_ATTACH_OPT, ""),
    SecDef("lirc_mode2", _T.LIRC_MODE2, _A.LIRC_MODE2, SEC_ATTACHABLE | SEC_EXP_ATTACH_OPT, ""),
    SecDef("flow_dissector", _T.FLOW_DISSECTOR, _A.FLOW_DISSECTOR, SEC_ATTACHABLE | SEC_EXP_ATTACH_OPT, ""),
    SecDef(
        "cgroup_skb/ingress", _T.CGROUP_SKB, _A.CGROUP_INET_INGRESS, SEC_ATTACHABLE | SEC_EXP_ATTACH_OPT, ""
    ),
    SecDef(
        "cgroup_skb/egress", _T.CGROUP_SKB, _A.CGROUP_INET_EGRESS, SEC_ATTACHABLE | SEC_EXP_ATTACH_OPT, ""
    ),
    SecDef("cgroup/skb", _T.CGROUP_SKB, 0, SEC_NONE, ""),
    SecDef("cgroup/sock_create", _T.CGROUP_SOCK, _A.CGROUP_INET_SOCK_CREATE, SEC_ATTACHABLE, ""),
    SecDef("cgroup/sock_release", _T.CGROUP_SOCK, _A.CGROUP_INET_SOCK_RELEASE, SEC_ATTACHABLE, ""),
    SecDef(
        "cgroup/sock", _T.CGROUP_SOCK, _A.CGROUP_INET_SOCK_CREATE, SEC_ATTACHABLE | SEC_EXP_ATTACH_OPT, ""
    ),
    SecDef("cgroup/post_bind4", _T.CGROUP_SOCK, _A.CGROUP_INET4_POST_BIND, SEC_ATTACHABLE, ""),
    SecDef("cgroup/post_bind6", _T.CGROUP_SOCK, _A.CGROUP_INET6_POST_BIND, SEC_ATTACHABLE, ""),
    SecDef("cgroup/bind4", _T.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_BIND, SEC_ATTACHABLE, ""),
    SecDef("cgroup/bind6", _T.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_BIND, SEC_ATTACHABLE, ""),
    SecDef("cgroup/connect4", _T.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_CONNECT, SEC_ATTACHABLE, ""),
    SecDef("cgroup/connect6", _T.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_CONNECT, SEC_ATTACHABLE, ""),
    SecDef("cgroup/sendmsg4", _T.CGROUP_SOCK_ADDR, _A.CGROUP_UDP4_SENDMSG, SEC_ATTACHABLE, ""),
    SecDef("cgroup/sendmsg6", _T.CGROUP_SOCK_ADDR, _A.CGROUP_UDP6_SENDMSG, SEC_ATTACHABLE, ""),
    SecDef("cgroup/recvmsg4", _T.CGROUP_SOCK_ADDR, _A.CGROUP_UDP4_RECVMSG, SEC_ATTACHABLE, ""),
    SecDef("cgroup/recvmsg6", _T.CGROUP_SOCK_ADDR, _A.CGROUP_UDP6_RECVMSG, SEC_ATTACHABLE, ""),
    SecDef("cgroup/getpeername4", _T.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_GETPEERNAME, SEC_ATTACHABLE, ""),
    SecDef("cgroup/getpeername6", _T.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_GETPEERNAME, SEC_ATTACHABLE, ""),
    SecDef("cgroup/getsockname4", _T.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_GETSOCKNAME, SEC_ATTACHABLE, ""),
    SecDef("cgroup/getsockname6", _T.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_GETSOCKNAME, SEC_ATTACHABLE, ""),
    SecDef("cgroup/sysctl", _T.CGROUP_SYSCTL, _A.CGROUP_SYSCTL, SEC_ATTACHABLE, ""),
    SecDef("cgroup/getsockopt", _T.CGROUP_SOCKOPT, _A.CGROUP_GETSOCKOPT, SEC_ATTACHABLE, ""),
    SecDef("cgroup/setsockopt", _T.CGROUP_SOCKOPT, _A.CGROUP_SETSOCKOPT, SEC_ATTACHABLE, ""),
    SecDef("cgroup/dev", _T.CGROUP_DEVICE, _A.CGROUP_DEVICE, SEC_ATTACHABLE | SEC_EXP_ATTACH_OPT, ""),
    SecDef("struct_ops+", _T.STRUCT_OPS, 0, SEC_NONE, ""),
    SecDef("struct_ops.s+", _T.STRUCT_OPS, 0, SEC_SLEEPABLE, ""),
    SecDef("sk_lookup", _T.SK_LOOKUP, _A.SK_LOOKUP, SEC_ATTACHABLE, ""),
)


@dataclass(frozen=True)
class SectionInfo:
    """What a section name means: the matching row plus the part after the prefix (the attach target)."""

    section: str
    secdef: SecDef
    attach_to: str  # e.g. "syscalls/sys_enter_execve", "/usr/bin/bash:readline", "" if none

    @property
    def prog_type(self) -> ProgType:
        return self.secdef.prog_type

    @property
    def expected_attach_type(self) -> int:
        return self.secdef.expected_attach_type

    @property
    def prog_flags(self) -> int:
        flags = 0
        if self.secdef.flags & SEC_SLEEPABLE:
            flags |= 1 << 4  # BPF_F_SLEEPABLE
        if self.secdef.flags & SEC_XDP_FRAGS:
            flags |= BPF_F_XDP_HAS_FRAGS
        return flags

    @property
    def attach_kind(self) -> str:
        return self.secdef.attach


def _matches(prefix: str, name: str) -> Optional[str]:
    """The attach-target part of ``name`` if it matches ``prefix`` (libbpf rules), else None."""
    if prefix.endswith("/"):
        return name[len(prefix) :] if name.startswith(prefix) else None
    if prefix.endswith("+"):
        base = prefix[:-1]
        if name == base:
            return ""
        if name.startswith(base + "/"):
            return name[len(base) + 1 :]
        return None
    return "" if name == prefix else None


def lookup(section: str) -> Optional[SectionInfo]:
    """The meaning of a program section name, or None when libbpf would not recognise it either."""
    for secdef in SECTION_DEFS:
        extra = _matches(secdef.prefix, section)
        if extra is not None:
            return SectionInfo(section, secdef, extra)
    return None


def split_tracepoint(target: str) -> Tuple[str, str]:
    """``"syscalls/sys_enter_execve"`` → ``("syscalls", "sys_enter_execve")``; ("", "") when malformed."""
    category, sep, name = target.partition("/")
    if not sep or not category or not name or "/" in name:
        return "", ""
    return category, name


def split_uprobe(target: str) -> Tuple[str, str, int]:
    """``"/usr/bin/bash:readline+4"`` → ``("/usr/bin/bash", "readline", 4)``; ``("", "", 0)`` when malformed.

    A bare hex/decimal offset (``"/bin/x:0x1234"``) gives an empty symbol and that offset.
    """
    binary, sep, func = target.rpartition(":")
    if not sep or not binary or not func:
        return "", "", 0
    symbol, plus, off = func.partition("+")
    offset = 0
    if plus:
        try:
            offset = int(off, 0)
        except ValueError:
            return "", "", 0
    if symbol and (symbol[0].isdigit()):
        try:
            return binary, "", int(symbol, 0) + offset
        except ValueError:
            return "", "", 0
    return binary, symbol, offset
