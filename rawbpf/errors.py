"""The one rawbpf error hierarchy; pure, makes no syscalls.

Every failure rawbpf reports is a :class:`RawBPFError`. Messages are one line, lower-case, context first:
``load program 'handle_exec': permission denied (need CAP_BPF or root)``. Where it happened is a field,
:attr:`RawBPFError.context` (``object 'x': section 'y'``), set once by whoever knows it
(:meth:`RawBPFError.with_context`) and printed in front of the message; nobody edits message text. Kernel
failures are :class:`SyscallError`, which is also an :class:`OSError` so ``errno`` works as usual (errno
names come from :mod:`errno`); an ``OSError`` becomes a rawbpf error exactly once, in :mod:`rawbpf._sys`.
A refusal that comes with the kernel's own log — the verifier's for a program, the BTF checker's for BTF —
is a :class:`KernelRefusal`: ``reason`` (the log's telling line), ``log``, ``tail()``, shown the same way.
"""

from __future__ import annotations

import errno as _errno
import os
import re
from typing import Optional, Sequence, TypeVar

__tier__ = "pure"


E = TypeVar("E", bound="RawBPFError")


class RawBPFError(Exception):
    """Base of every error rawbpf raises on purpose."""

    #: where it happened (``object 'x': section 'y'``), printed before the message; "" when unknown
    context: str = ""

    def with_context(self: E, context: str) -> E:
        """Record where this happened unless a caller nearer the failure already did; returns the error."""
        if not self.context:
            self.context = context
        return self

    def message(self) -> str:
        """The message without its context."""
        return str(self.args[0]) if len(self.args) == 1 else Exception.__str__(self)

    def __str__(self) -> str:
        msg = self.message()
        return f"{self.context}: {msg}" if self.context else msg

    def summary(self) -> str:
        """One line for the CLI (the message itself)."""
        return str(self).splitlines()[0] if str(self) else type(self).__name__

    def detail(self) -> str:
        """Everything known, for ``--verbose`` (defaults to the message)."""
        return str(self)


class ObjectError(RawBPFError):
    """A BPF ELF object is malformed or uses something rawbpf cannot load."""


class BTFError(RawBPFError):
    """BTF (or .BTF.ext) data is malformed, or a type lookup failed."""


class RelocationError(RawBPFError):
    """A relocation (map, call, CO-RE, extern) could not be resolved."""


class AsmError(RawBPFError):
    """Bad assembler input: unknown helper, missing label, invalid operand."""


class LogFormatError(RawBPFError):
    """A log file is not a rawbpf msgpack log, or is corrupt beyond a torn tail."""


class ConfigError(RawBPFError):
    """Bad user input that is not an object: an option value, a --set assignment, a path."""


class NotSupportedError(RawBPFError):
    """The running kernel lacks a feature. ``min_kernel`` names the first release that has it."""

    def __init__(self, feature: str, min_kernel: Optional[str] = None, why: str = "") -> None:
        self.feature = feature
        self.min_kernel = min_kernel
        msg = f"{feature} is not supported by this kernel"
        if min_kernel:
            msg += f" (needs Linux {min_kernel} or later)"
        if why:
            msg += f": {why}"
        super().__init__(msg)


#: the kernel-internal "operation not supported" (not in :mod:`errno`) that some bpf commands leak
ENOTSUPP = 524

#: the hint for an errno when the caller gives none (the one table; :mod:`rawbpf._sys` uses it too)
HINTS = {
    _errno.EPERM: "need CAP_BPF/CAP_PERFMON or root",
    _errno.EACCES: "need CAP_BPF/CAP_PERFMON or root",
    _errno.E2BIG: "a size or count is larger than the kernel allows, or the kernel is older than this attr",
    _errno.ENOSYS: "the kernel was built without this syscall",
}


class SyscallError(RawBPFError, OSError):
    """A bpf(2), perf_event_open(2), ioctl or mount call failed. Also an OSError with ``errno`` set."""

    def __init__(self, op: str, err: int, hint: str = "") -> None:
        self.op = op
        self.errno_value = err
        msg = f"{op}: {os.strerror(err).lower()}" if err else op
        hint = hint or HINTS.get(err, "")
        if hint:
            msg += f" ({hint})"
        RawBPFError.__init__(self, msg)
        self.errno = err
        self.strerror = os.strerror(err) if err else ""

    @property
    def errno_name(self) -> str:
        """``EPERM``, ``EINVAL``…: the symbolic name of :attr:`errno`."""
        if self.errno_value == ENOTSUPP:
            return "ENOTSUPP"
        return _errno.errorcode.get(self.errno_value, str(self.errno_value))

    def message(self) -> str:
        return str(self.args[0]) if self.args else self.op

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.op, self.errno_value), {"context": self.context})


class KernelRefusal(SyscallError):
    """The kernel refused and said why in its log: ``reason`` is the log's telling line, ``log`` all of it,
    ``tail()`` its last lines; :attr:`log_name` names the log (``verifier log``, ``btf log``)."""

    log: str = ""
    reason: str = ""
    log_name = "kernel log"

    def tail(self, lines: int = 12) -> str:
        """The last meaningful lines of the log."""
        kept = [ln for ln in self.log.splitlines() if ln.strip()]
        return "\n".join(kept[-lines:])

    def detail(self) -> str:
        return f"{self}\n--- {self.log_name} ---\n{self.log.rstrip()}"


class VerifierError(KernelRefusal):
    """The verifier rejected a program.

    ``summary()`` is one line (the kernel's reason, and the C source line of the failing instruction when
    line info is known); ``tail()`` the last lines of the log; ``log`` the full verifier log.
    """

    log_name = "verifier log"

    def __init__(
        self,
        op: str,
        err: int,
        log: str,
        *,
        reason: str = "",
        insn_index: Optional[int] = None,
        source: str = "",
    ) -> None:
        self.log = log
        self.reason = reason or explain_refusal(log, err) or os.strerror(err).lower()
        self.insn_index = insn_index
        self.source = source
        SyscallError.__init__(self, op, err)
        line = f"{op}: verifier rejected program: {self.reason}"
        if source:
            line += f" [at {source}]"
        elif insn_index is not None:
            line += f" (insn {insn_index})"
        self.args = (line,)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_rebuild_verifier_error, (self.op, self.errno_value, self.log, self.reason, self.insn_index,
                                          self.source), {"context": self.context})


class BTFLoadError(KernelRefusal, BTFError):
    """The kernel refused a BTF blob (BPF_BTF_LOAD): ``log`` is its full log, ``tail()`` its last lines."""

    log_name = "btf log"

    def __init__(self, what: str, reason: str, log: str, err: int) -> None:
        SyscallError.__init__(self, what, err)
        self.log = log
        self.reason = reason
        self.args = (f"{what}: kernel refused btf: {reason}",)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.op, self.reason, self.log, self.errno_value), {"context": self.context})


def _rebuild_verifier_error(op: str, err: int, log: str, reason: str, insn: Optional[int],
                            source: str) -> VerifierError:
    return VerifierError(op, err, log, reason=reason, insn_index=insn, source=source)


_NOISE = ("processed ", "verification time", "stack depth", "max_states_per_insn", "peak_states", "mark_read")


#: why the kernel refuses a program before verifying it, by errno (the log then holds no reason)
PRE_VERIFY = {
    _errno.EPERM: "the kernel refused this program type or attach point before verifying it (EPERM)",
    _errno.EACCES: "the kernel refused this program before verifying it (EACCES)",
    ENOTSUPP: "this program type or attach point is not supported by this kernel (ENOTSUPP)",
    _errno.EOPNOTSUPP: "this program type or attach point is not supported by this kernel (EOPNOTSUPP)",
}

_PROCESSED_RE = re.compile(r"^processed (\d+) insns", re.M)
_CALL_RE = re.compile(r"\bcall ([A-Za-z_][A-Za-z0-9_]*)")


def explain_refusal(log: str, err: int) -> str:
    """The reason a program load failed, from its verifier log and errno.

    A GPL-only helper or kfunc called from a program whose license is not GPL-compatible (or that has none)
    is named; a refusal before verification (EPERM/ENOTSUPP with no instruction processed) names the errno,
    not whatever the log printed before it (kernel-side CO-RE lines); else the log's last telling line."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if "non-GPL compatible" in ln:
            calls = (_CALL_RE.search(prev) for prev in reversed(lines[:i]))
            called = next((m.group(1) for m in calls if m), "")
            what = f"'{called}'" if called else "a function"
            return (f"{what} is GPL-only and the program's license is not GPL-compatible "
                    '(add: char LICENSE[] SEC("license") = "GPL";)')
    processed = [int(n) for n in _PROCESSED_RE.findall(log)]
    if err in PRE_VERIFY and not any(processed):
        # a struct_ops program for a member the kernel's struct_ops cannot take says which one
        member = next((ln for ln in lines if ln.startswith("attach to unsupported member")), "")
        if member:
            return f"{member} ({'ENOTSUPP' if err == ENOTSUPP else _errno.errorcode.get(err, err)})"
        return PRE_VERIFY[err]
    return _last_meaningful_line(log)


def _last_meaningful_line(log: str) -> str:
    """The line of a verifier log that best says why it failed (the last line that is not statistics)."""
    lines: Sequence[str] = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if not ln.startswith(_NOISE):
            return ln
    return ""
