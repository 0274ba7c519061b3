"""BPF programs: load with the verifier-log retry strategy, inspect, test-run, pin; stats. Touches the kernel.

:meth:`Program.load` first loads with no log (fast, and the common case succeeds). On failure it loads
again with a level-1 log in a buffer that grows on ENOSPC (to the size the kernel reports in
``log_true_size`` when it does, Linux 6.4+), and raises :class:`~rawbpf.errors.VerifierError` whose summary
names the kernel's reason, the failing instruction, and that instruction's C source line when the caller can
map it (``source_line``).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import logging
import os
import re
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

from rawbpf import _sys, bpffs
from rawbpf._fd import FD
from rawbpf._types import EnableStatsAttr, ProgBindMapAttr, ProgInfoStruct, ProgLoadAttr, TestRunAttr, ptr
from rawbpf.asm.codec import INSN_SIZE
from rawbpf.consts import BPF_STATS_RUN_TIME, Cmd, ProgType
from rawbpf.errors import ConfigError, SyscallError, VerifierError
from rawbpf.maps import ENOTSUPP, sanitize_name

__tier__ = "kernel"

log = logging.getLogger("rawbpf")

LOG_BUF_START = 256 * 1024
LOG_BUF_MAX = (1 << 30) - 1  # the kernel refuses log_size above UINT_MAX >> 2

_INSN_LINE = re.compile(r"^(\d+): \([0-9a-f]{2}\)")
# program types whose BPF_PROG_TEST_RUN refuses a non-zero repeat
_NO_REPEAT = (ProgType.RAW_TRACEPOINT, ProgType.RAW_TRACEPOINT_WRITABLE, ProgType.TRACING, ProgType.SYSCALL)


def failing_insn(log_text: str) -> Optional[int]:
    """Index of the last instruction the verifier printed before giving up (``12: (85) call …``); pure."""
    idx: Optional[int] = None
    for line in log_text.splitlines():
        m = _INSN_LINE.match(line.strip())
        if m:
            idx = int(m.group(1))
    return idx


@dataclass(frozen=True)
class ProgInfo:
    """What BPF_OBJ_GET_INFO_BY_FD says about a program. ``xlated`` is empty without CAP_SYS_ADMIN."""

    id: int
    tag: bytes
    name: str
    type: int
    xlated: bytes
    jited_len: int
    xlated_len: int
    run_cnt: int
    run_time_ns: int
    map_ids: Tuple[int, ...]
    btf_id: int
    load_time: int = 0
    created_by_uid: int = 0
    gpl_compatible: bool = False
    verified_insns: int = 0
    recursion_misses: int = 0
    attach_btf_obj_id: int = 0
    attach_btf_id: int = 0

    @property
    def tag_hex(self) -> str:
        return self.tag.hex()

    @property
    def type_name(self) -> str:
        try:
            return ProgType(self.type).name.lower()
        except ValueError:
            return f"type{self.type}"


@dataclass(frozen=True)
class TestRunResult:
    """Result of BPF_PROG_TEST_RUN: return value, mean run time, and output buffers."""

    __test__ = False  # not a pytest class
    retval: int
    duration_ns: int
    data_out: bytes = b""
    ctx_out: bytes = b""


def _prog_info(fd: int, what: str, *, with_insns: bool = True) -> ProgInfo:
    first = ProgInfoStruct()
    _sys.obj_get_info(fd, first, what)
    nmaps = int(first.nr_map_ids)
    xlen = int(first.xlated_prog_len) if with_insns else 0
    map_ids = (ctypes.c_uint32 * max(nmaps, 1))()
    xbuf = ctypes.create_string_buffer(max(xlen, 1))
    raw = ProgInfoStruct(nr_map_ids=nmaps, map_ids=ptr(map_ids), xlated_prog_len=xlen,
                         xlated_prog_insns=ptr(xbuf) if xlen else 0)
    _sys.obj_get_info(fd, raw, what)
    got = min(int(raw.xlated_prog_len), xlen)
    return ProgInfo(
        id=raw.id, tag=bytes(raw.tag), name=raw.name.decode(errors="replace"), type=raw.type,
        xlated=xbuf.raw[:got] if raw.xlated_prog_insns else b"", jited_len=raw.jited_prog_len,
        xlated_len=first.xlated_prog_len, run_cnt=raw.run_cnt, run_time_ns=raw.run_time_ns,
        map_ids=tuple(map_ids[i] for i in range(min(nmaps, int(raw.nr_map_ids)))), btf_id=raw.btf_id,
        load_time=raw.load_time, created_by_uid=raw.created_by_uid,
        gpl_compatible=bool(raw.gpl_compatible & 1),
        verified_insns=raw.verified_insns, recursion_misses=raw.recursion_misses,
        attach_btf_obj_id=raw.attach_btf_obj_id, attach_btf_id=raw.attach_btf_id,
    )


class Program(FD):
    """One loaded BPF program (owns its fd). Closing it unloads the program unless pinned or attached."""

    kind = "program"

    def __init__(self, fd: int, *, owned: bool = True, name: str = "", prog_type: int = -1,
                 expected_attach_type: int = 0, attach_btf_id: int = 0, verifier_log: str = "") -> None:
        super().__init__(fd, owned=owned)
        self._id = 0
        if prog_type < 0:
            try:
                info = _prog_info(fd, f"inspect program fd {fd}", with_insns=False)
            except BaseException:
                self.close()
                raise
            name, prog_type, attach_btf_id, self._id = info.name, info.type, info.attach_btf_id, info.id
        self.name = name
        try:
            self.type: Union[ProgType, int] = ProgType(prog_type)
        except ValueError:
            self.type = prog_type
        self.expected_attach_type = expected_attach_type
        self.attach_btf_id = attach_btf_id
        #: the verifier log when the program was loaded with log_level > 0 (else "")
        self.verifier_log = verifier_log

    # --- construction ---------------------------------------------------------------------------

    @classmethod
    def load(cls, prog_type: int, insns: bytes, *, name: str = "", license: str = "GPL",
             expected_attach_type: int = 0, attach_btf_id: int = 0, attach_btf_obj_fd: int = 0,
             kern_version: int = 0, flags: int = 0, btf_fd: int = -1,
             func_info: bytes = b"", func_info_rec_size: int = 8,
             line_info: bytes = b"", line_info_rec_size: int = 16,
             core_relos: bytes = b"", core_relo_rec_size: int = 16,
             fd_array: Sequence[int] = (), log_level: int = 0,
             source_line: Optional[Callable[[int], str]] = None) -> Program:
        """BPF_PROG_LOAD with the log strategy described in the module docstring."""
        what = f"load program '{name}'" if name else "load program"
        insns = bytes(insns)
        if not insns or len(insns) % INSN_SIZE:
            raise ConfigError(f"{what}: instructions must be a non-empty multiple of 8 bytes, "
                              f"got {len(insns)}")
        for blob, rec, label in ((func_info, func_info_rec_size, "func_info"),
                                 (line_info, line_info_rec_size, "line_info"),
                                 (core_relos, core_relo_rec_size, "core_relos")):
            if blob and (rec <= 0 or len(blob) % rec):
                raise ConfigError(f"{what}: {label} is {len(blob)} bytes, "
                                  f"not a multiple of its record size {rec}")
        try:
            ptype = ProgType(prog_type)
        except ValueError:
            raise ConfigError(f"{what}: unknown program type {prog_type}") from None

        keep: List[object] = []  # buffers the attr points into, alive until the syscall returns

        def buf(data: bytes) -> int:
            if not data:
                return 0
            b = ctypes.create_string_buffer(data, len(data))
            keep.append(b)
            return ctypes.addressof(b)

        ibuf = ctypes.create_string_buffer(insns, len(insns))
        lic = ctypes.create_string_buffer(license.encode())
        attr = ProgLoadAttr(
            prog_type=int(ptype), insn_cnt=len(insns) // INSN_SIZE, insns=ctypes.addressof(ibuf),
            license=ctypes.addressof(lic), kern_version=kern_version, prog_flags=flags,
            prog_name=sanitize_name(name).encode(), expected_attach_type=expected_attach_type,
            attach_btf_id=attach_btf_id, attach_btf_obj_fd=attach_btf_obj_fd,
        )
        if btf_fd >= 0:
            attr.prog_btf_fd = btf_fd
        if func_info:
            attr.func_info, attr.func_info_rec_size = buf(func_info), func_info_rec_size
            attr.func_info_cnt = len(func_info) // func_info_rec_size
        if line_info:
            attr.line_info, attr.line_info_rec_size = buf(line_info), line_info_rec_size
            attr.line_info_cnt = len(line_info) // line_info_rec_size
        if core_relos:
            attr.core_relos, attr.core_relo_rec_size = buf(core_relos), core_relo_rec_size
            attr.core_relo_cnt = len(core_relos) // core_relo_rec_size
        if fd_array:
            arr = (ctypes.c_int32 * len(fd_array))(*fd_array)
            keep.append(arr)
            attr.fd_array = ctypes.addressof(arr)

        hints = {
            _errno.EINVAL: "the kernel refused the program's attributes (type, attach type/BTF id, flags)",
            _errno.E2BIG: "too many instructions, or attributes this kernel does not know",
            ENOTSUPP: "not supported by this kernel for this program type",
        }
        fd, vlog = _load_with_log(attr, what, hints, log_level, source_line)
        return cls(fd, name=sanitize_name(name), prog_type=int(ptype),
                   expected_attach_type=expected_attach_type, attach_btf_id=attach_btf_id, verifier_log=vlog)

    @classmethod
    def from_fd(cls, fd: int, owned: bool = True) -> Program:
        """Wrap an existing program fd (``owned``: close it with the Program). A non-program fd is refused
        and left open."""
        kind = _sys.fd_kind(fd)
        if kind != "program":
            raise ConfigError(f"wrap fd {fd} as a program: not a program (a {kind or 'non-bpf'} object)")
        return cls(fd, owned=owned)

    @classmethod
    def from_pin(cls, path: Union[str, os.PathLike[str]]) -> Program:
        """Open the program pinned at ``path``."""
        fd = bpffs.get(path, f"open program pinned at {os.fspath(path)}")
        return cls._wrap_new(fd, f"open program pinned at {os.fspath(path)}")

    @classmethod
    def from_id(cls, prog_id: int) -> Program:
        """Open a program by its kernel id."""
        fd = _sys.get_fd_by_id(Cmd.PROG_GET_FD_BY_ID, prog_id, f"open program id {prog_id}")
        return cls._wrap_new(fd, f"open program id {prog_id}")

    @classmethod
    def _wrap_new(cls, fd: int, what: str) -> Program:
        kind = _sys.fd_kind(fd)
        if kind != "program":
            _sys.close(fd)
            raise ConfigError(f"{what}: not a program (a {kind or 'non-bpf'} object)")
        try:
            info = _prog_info(fd, what, with_insns=False)
        except BaseException:
            _sys.close(fd)
            raise
        p = cls(fd, name=info.name, prog_type=info.type, attach_btf_id=info.attach_btf_id)
        p._id = info.id
        return p

    # --- description ----------------------------------------------------------------------------

    @property
    def label(self) -> str:
        return f"program '{self.name}'" if self.name else f"program fd {self._fd}"

    @property
    def id(self) -> int:
        """The kernel id (queried once)."""
        if not self._id:
            self._id = self.info(with_insns=False).id
        return self._id

    def info(self, *, with_insns: bool = True) -> ProgInfo:
        """Fresh program info (with the translated instructions unless ``with_insns`` is False)."""
        info = _prog_info(self.fd, f"inspect {self.label}", with_insns=with_insns)
        self._id = info.id
        return info

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd={self._fd}"
        tname = self.type.name.lower() if isinstance(self.type, ProgType) else str(self.type)
        return f"<Program {self.name!r} {tname} {state}>"

    # --- operations -----------------------------------------------------------------------------

    def pin(self, path: Union[str, os.PathLike[str]]) -> None:
        """Pin at ``path`` on bpffs (the program stays loaded until unpinned)."""
        bpffs.pin(self.fd, path, f"pin {self.label} at {os.fspath(path)}")

    def bind_map(self, m: FD) -> None:
        """BPF_PROG_BIND_MAP: keep map ``m`` alive as long as this program, even if no instruction uses it
        (e.g. a metadata .rodata); Linux 5.10+."""
        attr = ProgBindMapAttr(prog_fd=self.fd, map_fd=m.fd)
        _sys.bpf(Cmd.PROG_BIND_MAP, attr, f"bind map to {self.label}")

    def test_run(self, data_in: bytes = b"", ctx_in: bytes = b"", repeat: int = 1,
                 data_out_size: Optional[int] = None, *, ctx_out_size: int = 0, flags: int = 0,
                 cpu: int = 0) -> TestRunResult:
        """BPF_PROG_TEST_RUN. ``data_out_size`` defaults to len(data_in). For raw tracepoint, tracing and
        syscall programs the kernel runs once and refuses ``repeat``; it is sent as 0 for them."""
        if self.type in _NO_REPEAT:
            repeat = 0
        if repeat < 0:
            raise ConfigError(f"test run {self.label}: repeat must be >= 0")
        dout = len(data_in) if data_out_size is None else data_out_size
        din = ctypes.create_string_buffer(bytes(data_in), max(len(data_in), 1))
        cin = ctypes.create_string_buffer(bytes(ctx_in), max(len(ctx_in), 1))
        dbuf = ctypes.create_string_buffer(max(dout, 1))
        cbuf = ctypes.create_string_buffer(max(ctx_out_size, 1))
        attr = TestRunAttr(prog_fd=self.fd, repeat=repeat, flags=flags, cpu=cpu)
        if data_in:
            attr.data_in, attr.data_size_in = ptr(din), len(data_in)
        if dout:
            attr.data_out, attr.data_size_out = ptr(dbuf), dout
        if ctx_in:
            attr.ctx_in, attr.ctx_size_in = ptr(cin), len(ctx_in)
        if ctx_out_size:
            attr.ctx_out, attr.ctx_size_out = ptr(cbuf), ctx_out_size
        _sys.bpf(Cmd.PROG_TEST_RUN, attr, f"test run {self.label}", hints={
            ENOTSUPP: "this program type cannot be test-run",
            _errno.EOPNOTSUPP: "this program type cannot be test-run",
            _errno.EINVAL: "input sizes or repeat/ctx/flags not accepted for this program type",
            _errno.ENOSPC: "data_out_size is too small for the output",
        })
        return TestRunResult(
            retval=int(attr.retval), duration_ns=int(attr.duration),
            data_out=dbuf.raw[: min(int(attr.data_size_out), dout)] if dout else b"",
            ctx_out=cbuf.raw[: min(int(attr.ctx_size_out), ctx_out_size)] if ctx_out_size else b"",
        )


def _load_with_log(attr: ProgLoadAttr, what: str, hints: dict, log_level: int,
                   source_line: Optional[Callable[[int], str]]) -> Tuple[int, str]:
    """Run PROG_LOAD; on failure rerun with a growing level-1 log and raise VerifierError from it."""
    first_err: Optional[SyscallError] = None
    if log_level == 0:
        try:
            return _sys.bpf(Cmd.PROG_LOAD, attr, what, hints=hints), ""
        except SyscallError as err:
            first_err = err
    level = log_level or 1
    size = LOG_BUF_START
    while True:
        logbuf = ctypes.create_string_buffer(size)
        attr.log_level, attr.log_size, attr.log_true_size = level, size, 0
        attr.log_buf = ctypes.addressof(logbuf)
        try:
            fd = _sys.bpf(Cmd.PROG_LOAD, attr, what, hints=hints)
        except SyscallError as err:
            text = logbuf.value.decode(errors="replace")
            true_size = int(attr.log_true_size)
            if err.errno == _errno.ENOSPC and size < LOG_BUF_MAX:
                size = min(LOG_BUF_MAX, max(true_size + 1, size * 4))
                continue
            attr.log_level, attr.log_size, attr.log_buf = 0, 0, 0
            if not text.strip():
                # nothing from the verifier: the refusal came before it (attrs, privileges, size)
                raise (first_err or err) from None
            insn = failing_insn(text)
            src = ""
            if insn is not None and source_line is not None:
                try:
                    src = source_line(insn) or ""
                except Exception as cb_err:  # a broken mapping must not hide the verifier's answer
                    log.debug("source_line(%d) failed: %s", insn, cb_err)
            raise VerifierError(what, err.errno or _errno.EINVAL, text, insn_index=insn,
                                source=src) from None
        attr.log_level, attr.log_size, attr.log_buf = 0, 0, 0
        text = logbuf.value.decode(errors="replace")
        if first_err is not None:
            log.debug("%s: failed without a log (%s) but loaded with one", what, first_err)
        return fd, text


def iter_ids() -> Iterator[int]:
    """Ids of every program loaded in the kernel right now (BPF_PROG_GET_NEXT_ID)."""
    return _sys.iter_ids(Cmd.PROG_GET_NEXT_ID)


def enable_stats() -> FD:
    """BPF_ENABLE_STATS(RUN_TIME): programs count run_cnt/run_time_ns while the returned FD is open.

    Closing the FD turns the collection off again (unless someone else holds it on, or the
    kernel.bpf_stats_enabled sysctl is set)."""
    attr = EnableStatsAttr(type=BPF_STATS_RUN_TIME)
    fd = _sys.bpf(Cmd.ENABLE_STATS, attr, "enable bpf run-time stats")
    stats = FD(fd)
    stats.kind = "stats"
    return stats
