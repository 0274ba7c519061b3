"""Load a CollectionSpec into the kernel: BTF, maps, relocation, programs; attach and pin. Touches the kernel.

:meth:`Collection.load` follows libbpf's load order — BTF_LOAD (DATASECs filled, kinds the kernel lacks
sanitised) → maps (pinned-by-name maps reused after a compatibility check, global data written, read-only
data frozen) → per program: subprograms appended, data references patched, CO-RE applied (by the kernel, or
in user space against vmlinux BTF) → BPF_PROG_LOAD. Any failure closes everything created so far and removes
the pins this load made; nothing is left behind. Closing the Collection detaches its links, unpins what
:meth:`Collection.pin` pinned, and releases its maps and programs; maps pinned by name stay pinned, as with
libbpf, for the next load to reuse.
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Set, Tuple

from rawbpf import bpffs
from rawbpf._closing import Closing
from rawbpf._fd import FD
from rawbpf.consts import BPF_F_MMAPABLE, AttachType, MapType, ProgType
from rawbpf.errors import (
    BTFLoadError,
    ConfigError,
    NotSupportedError,
    ObjectError,
    RawBPFError,
    RelocationError,
    VerifierError,
)
from rawbpf.globals import decode_value, encode_value
from rawbpf.linker import ExternValue, LinkedProgram, link, patch_data
from rawbpf.maps import Map
from rawbpf.programs import Program
from rawbpf.spec import (
    CollectionSpec,
    MapKind,
    MapSpec,
    Pinning,
    ProgramSpec,
    pack_core_relos,
    pack_func_info,
    pack_line_info,
)

__tier__ = "kernel"

log = logging.getLogger("rawbpf")

# map types that take no BTF key/value ids (libbpf clears them before BPF_MAP_CREATE)
_NO_BTF_KV = frozenset(
    {
        MapType.PERF_EVENT_ARRAY,
        MapType.CGROUP_ARRAY,
        MapType.STACK_TRACE,
        MapType.ARRAY_OF_MAPS,
        MapType.HASH_OF_MAPS,
        MapType.DEVMAP,
        MapType.DEVMAP_HASH,
        MapType.CPUMAP,
        MapType.XSKMAP,
        MapType.SOCKMAP,
        MapType.SOCKHASH,
        MapType.QUEUE,
        MapType.STACK,
        MapType.RINGBUF,
    }
)


class Variables(Mapping[str, Any]):
    """Global variables of a loaded collection, read and written by name (values decoded per BTF type).

    ``.data``/``.bss`` variables are read and written through an mmap of the map when it is
    BPF_F_MMAPABLE (no syscall per access), else by map lookup/update of key 0. ``.rodata`` variables are
    readable; the map is frozen, so writing them raises.
    """

    def __init__(self, coll: Collection) -> None:
        self._coll = coll
        self._mmaps: Dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        var = self._var(name)
        return decode_value(self._coll.spec.btf, var.type_id, self.raw(name))

    def __iter__(self) -> Iterator[str]:
        return iter(self._coll.spec.variables)

    def __len__(self) -> int:
        return len(self._coll.spec.variables)

    def _var(self, name: str) -> Any:
        var = self._coll.spec.variables.get(name)
        if var is None:
            raise ConfigError(f"collection '{self._coll.spec.name}': no global variable '{name}'")
        return var

    def _buffer(self, map_name: str) -> Optional[Any]:
        m = self._coll.maps[map_name]
        if not (m.flags & BPF_F_MMAPABLE):
            return None
        buf = self._mmaps.get(map_name)
        if buf is None:
            spec = self._coll.spec.maps[map_name]
            buf = m.mmap(writable=not spec.frozen)
            self._mmaps[map_name] = buf
        return buf

    def raw(self, name: str) -> bytes:
        """The variable's current bytes in the kernel map."""
        var = self._var(name)
        buf = self._buffer(var.map)
        if buf is not None:
            return bytes(buf[var.offset : var.offset + var.size])
        value = self._coll.maps[var.map].lookup(0) or b""
        return bytes(value[var.offset : var.offset + var.size])

    def set(self, name: str, value: Any) -> None:
        """Write a .data/.bss variable while the programs run."""
        var = self._var(name)
        if var.readonly:
            raise ConfigError(
                f"variable '{name}': read-only (.rodata is frozen after load; set it before load)"
            )
        raw = encode_value(self._coll.spec, var, value)
        buf = self._buffer(var.map)
        if buf is not None:
            buf[var.offset : var.offset + var.size] = raw
            return
        m = self._coll.maps[var.map]
        cur = bytearray(m.lookup(0) or bytes(m.value_size))
        cur[var.offset : var.offset + var.size] = raw
        m.update(0, bytes(cur))

    def __setitem__(self, name: str, value: Any) -> None:
        self.set(name, value)

    def close(self) -> None:
        for buf in self._mmaps.values():
            try:
                buf.close()
            except (BufferError, ValueError):
                pass
        self._mmaps.clear()


class Collection(Closing):
    """Maps, programs and links of one loaded object. A context manager; ``close()`` releases everything."""

    def __init__(self, spec: CollectionSpec) -> None:
        self.spec = spec
        self.maps: Dict[str, Map] = {}
        self.programs: Dict[str, Program] = {}
        self.links: Dict[str, Any] = {}
        self.linked: Dict[str, LinkedProgram] = {}
        self.btf: Optional[FD] = None
        self.variables = Variables(self)
        self.kernel_core = False
        #: struct_ops map name → how it is laid out and filled on this kernel
        self.struct_ops_plans: Dict[str, Any] = {}
        #: struct_ops map name → its registration (a Link for .struct_ops.link maps), made by attach_all()
        self.struct_ops: Dict[str, Any] = {}
        self._st_attach: Dict[str, Tuple[int, int]] = {}  # struct_ops program → (struct BTF id, member)
        self._pins: List[str] = []  # pins made by pin() (removed on close)
        self._by_name_pins: List[str] = []  # maps pinned by name at load (kept for the next load)
        self._reused: Set[str] = set()  # maps taken over from an existing pin
        self._pin_dirs: List[str] = []  # directories it created (removed on close when empty)
        self._closed = False

    # -- load ----------------------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        spec: CollectionSpec,
        *,
        pin_dir: Optional[str] = None,
        constants: Optional[Mapping[str, Any]] = None,
        kernel_core: Optional[bool] = None,
        programs: Optional[Iterable[str]] = None,
        log_level: int = 0,
    ) -> Collection:
        """Create the object's maps and load its programs.

        ``pin_dir``: bpffs directory for maps declared ``pinning: LIBBPF_PIN_BY_NAME`` (reused when a
        compatible map is already pinned there). ``constants``: initial values of global variables by name
        (``const volatile`` ones can only be set here). ``kernel_core``: True lets the kernel apply CO-RE
        relocations (Linux 5.17+), False applies them in user space against vmlinux BTF, None picks the
        kernel when it can. ``programs``: load only these (default: every program
        whose section does not start with ``?``, as libbpf).
        """
        spec = _private_copy(spec)
        for name, value in (constants or {}).items():
            spec.set_constant(name, value)
        wanted = [n for n, p in spec.programs.items() if p.autoload] if programs is None else list(programs)
        for name in wanted:
            prog = spec.programs.get(name)
            if prog is None:
                raise ConfigError(f"no program '{name}' (known: {', '.join(spec.programs)})").with_context(
                    where(spec.name))
            if not prog.known_section:
                raise ObjectError(f"unknown program section (program '{name}')").with_context(
                    where(spec.name, prog.section))
        wanted = _struct_ops_programs(spec, wanted, explicit=programs is not None)
        coll = cls(spec)
        try:
            coll._load(wanted, pin_dir, kernel_core, log_level)
        except BaseException:
            coll.close(unpin=True, keep_pinned_maps=False)
            raise
        return coll

    def _load(
        self, wanted: List[str], pin_dir: Optional[str], kernel_core: Optional[bool], log_level: int
    ) -> None:
        spec = self.spec
        self._load_btf()
        self.kernel_core = self._choose_core(kernel_core)
        from rawbpf import externs as _externs

        _externs.fill_kconfig(spec)
        self._plan_struct_ops()
        self._create_maps(pin_dir)
        externs = self._resolve_externs()
        self._load_programs([spec.programs[n] for n in wanted], externs, log_level)
        self._fill_map_values()

    def _load_programs(self, progs: List[ProgramSpec], externs: Dict[str, ExternValue],
                       log_level: int) -> None:
        """Link each program and hand it to the kernel; verification runs on worker threads.

        BPF_PROG_LOAD spends its time in the verifier with the GIL released, so while one program is being
        verified the next one is linked here and others verify on the other CPUs. The longest programs are
        sent first (verification time grows with length): a long one started last would leave the other
        CPUs idle at the end. Results are taken in program order: the first failure (in that order) is
        raised, after every program that did load is recorded, so the caller's close() releases them all.
        """
        workers = load_workers(len(progs), sum(p.insn_count for p in progs))
        if workers <= 1:
            for prog in progs:
                self.programs[prog.name] = self._finish_program(prog, self._prepare_program(prog, externs),
                                                                log_level)
            return
        from concurrent.futures import ThreadPoolExecutor

        pending: List[Tuple[ProgramSpec, Any]] = []
        unprepared: Optional[BaseException] = None  # a program that failed to link: nothing after it is sent
        with ThreadPoolExecutor(workers, thread_name_prefix="rawbpf-load") as pool:
            try:
                for prog in sorted(progs, key=lambda p: -p.insn_count):  # stable: ties keep their order
                    if any(f.done() and f.exception() is not None for _, f in pending):
                        break  # one was refused: the rest would only be loaded to be closed again
                    job = self._prepare_program(prog, externs)
                    pending.append((prog, pool.submit(self._finish_program, prog, job, log_level)))
            except BaseException as prep_err:
                unprepared = prep_err
        order = {prog.name: i for i, prog in enumerate(progs)}
        pending.sort(key=lambda job: order[job[0].name])
        failure: Optional[BaseException] = None
        for prog, fut in pending:
            refused = fut.exception()
            if refused is None:
                self.programs[prog.name] = fut.result()
            elif failure is None:
                failure = refused
        failure = failure or unprepared
        if failure is not None:
            raise failure

    def _load_btf(self) -> None:
        spec = self.spec
        if spec.btf is None:
            return
        from rawbpf.btf import BTF, BtfFeatures, Kind, fill_datasecs, fixup_externs, marshal, sanitized
        from rawbpf.kbtf import KernelBTF

        # a private copy to fill in; re-parsing the raw section is cheaper than a deep copy
        btf = BTF.parse(spec.btf_raw) if spec.btf_raw else spec.btf.copy()
        kmap = next((m for m in spec.maps.values() if m.kind == MapKind.KCONFIG), None)
        kconfig = {e.name: e.offset for e in spec.externs.values() if e.kind == "kconfig"}
        try:
            fixup_externs(btf, kconfig, kmap.value_size if kmap is not None else 0)
            fill_datasecs(btf, spec.section_sizes, spec.symbol_offsets, hidden=spec.hidden_symbols)
        except RawBPFError as err:
            raise ObjectError(str(err)).with_context(where(spec.name, ".BTF")) from err
        for prog in spec.subprograms.values():
            if prog.hidden:  # like libbpf: hidden global subprograms are verified as static functions
                for t in btf.find_all(prog.name, Kind.FUNC):
                    t.linkage = 0
        feats = _btf_features(btf)
        raw = marshal(btf if feats == BtfFeatures() else sanitized(btf, feats))
        try:
            self.btf = KernelBTF.load(raw)
        except BTFLoadError as err:
            # like libbpf: BTF is optional unless the kernel needs it (struct_ops); programs then load without
            # func/line info and CO-RE is applied here
            needs = [p.name for p in spec.programs.values() if p.type == ProgType.STRUCT_OPS]
            needs += [m.name for m in spec.maps.values() if m.kind == MapKind.STRUCT_OPS]
            if needs:
                raise err.with_context(where(spec.name, ".BTF")) from None
            log.warning("object '%s': the kernel refused its BTF (%s); loading without BTF",
                        spec.name, err.reason)
        except RawBPFError as err:
            raise err.with_context(where(spec.name, ".BTF")) from None
        spec.btf = btf

    def _choose_core(self, kernel_core: Optional[bool]) -> bool:
        if not self.spec.core_relo_count():
            return bool(kernel_core)
        if kernel_core is not None:
            if kernel_core and self.btf is None:
                raise NotSupportedError("kernel-side CO-RE", "5.17", "the object has no BTF")
            return kernel_core
        if self.btf is None:
            return False
        from rawbpf import features

        return features.has("kernel_core")

    # -- maps ----------------------------------------------------------------------------------------------

    def _create_maps(self, pin_dir: Optional[str]) -> None:
        for mspec in self.spec.maps.values():
            if mspec.pinning == Pinning.BY_NAME and pin_dir:
                path = os.path.join(pin_dir, pin_name(mspec.name))
                if os.path.exists(path):
                    m = Map.from_pin(path)
                    self.maps[mspec.name] = m
                    self._check_compatible(mspec, m, path)
                    self._reused.add(mspec.name)  # its contents are its own: .values are not written again
                    continue
                m = self._create_map(mspec)
                self.maps[mspec.name] = m
                self._pin(m.fd, path, f"pin map '{mspec.name}'", by_name=True)
                continue
            self.maps[mspec.name] = self._create_map(mspec)

    def _plan_struct_ops(self) -> None:
        """Match each struct_ops map's struct against the kernel's (pure, see rawbpf.structops)."""
        maps = [m for m in self.spec.maps.values() if m.kind == MapKind.STRUCT_OPS]
        if not maps:
            return
        from rawbpf import externs as _externs
        from rawbpf import structops

        if self.btf is None or self.spec.btf is None:
            raise ObjectError("struct_ops maps need the object's BTF loaded in the kernel").with_context(
                where(self.spec.name, maps[0].section))
        kbtf = _externs.vmlinux()
        for m in maps:
            self.struct_ops_plans[m.name] = structops.plan(m, self.spec.btf, kbtf,
                                                           where(self.spec.name, m.section))
        self._st_attach = structops.attach_points(list(self.struct_ops_plans.values()), where(self.spec.name))

    def _create_struct_ops_map(self, mspec: MapSpec) -> Map:
        """BPF_MAP_CREATE of a struct_ops map: the kernel's wrapper type gives its value; its value (with the
        program fds) is written when it is registered (attach_all)."""
        plan = self.struct_ops_plans[mspec.name]
        assert self.btf is not None
        try:
            return Map.create(MapType.STRUCT_OPS, 4, plan.value_size, 1, name=mspec.name, flags=mspec.flags,
                              btf_fd=self.btf.fd, btf_vmlinux_value_type_id=plan.value_type_id)
        except RawBPFError as err:
            raise self._map_error(mspec, err) from err

    def _create_map(self, mspec: MapSpec) -> Map:
        if mspec.kind == MapKind.STRUCT_OPS:
            return self._create_struct_ops_map(mspec)
        inner: Optional[Map] = None
        try:
            if mspec.inner is not None:
                inner = self._create_map(mspec.inner)
            btf_fd = self.btf.fd if self.btf is not None else -1
            key_id, value_id = mspec.btf_key_type_id, mspec.btf_value_type_id
            if mspec.type in _NO_BTF_KV or mspec.inner is not None:
                key_id = value_id = 0
            if not value_id or btf_fd < 0:
                btf_fd, key_id, value_id = -1, 0, 0
            flags = mspec.flags
            if flags & BPF_F_MMAPABLE and not _has("mmapable_array"):
                flags &= ~BPF_F_MMAPABLE  # Linux < 5.5: read and write through syscalls instead
            kwargs: Dict[str, Any] = dict(
                name=mspec.name,
                flags=flags,
                numa_node=mspec.numa_node,
                inner_map_fd=inner.fd if inner is not None else -1,
                map_extra=mspec.map_extra,
            )
            try:
                m = Map.create(
                    mspec.type,
                    mspec.key_size,
                    mspec.value_size,
                    mspec.max_entries,
                    btf_fd=btf_fd,
                    btf_key_type_id=key_id,
                    btf_value_type_id=value_id,
                    **kwargs,
                )
            except RawBPFError as err:
                if btf_fd < 0:
                    raise self._map_error(mspec, err) from err
                log.debug("map '%s': create with BTF failed (%s), retrying without", mspec.name, err)
                try:
                    m = Map.create(mspec.type, mspec.key_size, mspec.value_size, mspec.max_entries, **kwargs)
                except RawBPFError as err2:
                    raise self._map_error(mspec, err2) from err2
        finally:
            if inner is not None:
                inner.close()
        try:
            if mspec.data is not None and (mspec.kind != MapKind.BSS or any(mspec.data)):
                m.update(0, bytes(mspec.data))
            if mspec.frozen:
                m.freeze()
        except BaseException:
            m.close()
            raise
        return m

    def _map_error(self, mspec: MapSpec, err: RawBPFError) -> RawBPFError:
        context = where(self.spec.name, mspec.section)
        return err.with_context(context) if isinstance(err, ObjectError) else \
            ObjectError(str(err)).with_context(context)

    def _check_compatible(self, mspec: MapSpec, m: Map, path: str) -> None:
        want = (int(mspec.type), mspec.key_size, mspec.value_size, mspec.max_entries, mspec.flags)
        have = (int(m.type), m.key_size, m.value_size, m.max_entries, m.flags)
        if mspec.type == MapType.PERF_EVENT_ARRAY and mspec.max_entries == 0:
            want = (*want[:3], have[3], *want[4:])
        if want != have:
            names = ("type", "key_size", "value_size", "max_entries", "flags")
            diff = ", ".join(f"{n} {h} != {w}" for n, w, h in zip(names, want, have) if w != h)
            raise ObjectError(f"pinned map at {path} is incompatible ({diff})").with_context(
                f"{where(self.spec.name)}: map '{mspec.name}'")

    def _fill_map_values(self) -> None:
        for mspec in self.spec.maps.values():
            if mspec.name in self._reused:
                continue
            for slot, target in mspec.contents:
                m = self.maps[mspec.name]
                if mspec.type == MapType.PROG_ARRAY:
                    prog = self.programs.get(target)
                    if prog is None:  # libbpf refuses; a subset load (programs=...) is legitimate: say so
                        log.warning("object '%s': prog-array '%s' slot %d names program '%s', which was not "
                                    "loaded; the slot stays empty", self.spec.name, mspec.name, slot, target)
                        continue
                    m.update(slot, prog.fd.to_bytes(4, "little"))
                else:
                    m.update(slot, self.maps[target].fd.to_bytes(4, "little"))

    # -- externs -------------------------------------------------------------------------------------------

    def _resolve_externs(self) -> Dict[str, ExternValue]:
        from rawbpf import externs as _externs

        return _externs.resolve(self.spec, self.maps)

    # -- programs ------------------------------------------------------------------------------------------

    def _load_program(self, prog: ProgramSpec, externs: Dict[str, ExternValue], log_level: int) -> None:
        self.programs[prog.name] = self._finish_program(prog, self._prepare_program(prog, externs), log_level)

    def _prepare_program(self, prog: ProgramSpec, externs: Dict[str, ExternValue]
                         ) -> Tuple[LinkedProgram, bytes, int]:
        """Link, patch and relocate one program (user space only): its instructions, kernel CO-RE records
        and attach BTF id."""
        spec = self.spec
        try:
            linked = link(spec, prog.name)
        except RelocationError as err:
            raise err.with_context(where(spec.name, prog.section)) from None
        patch_data(linked, {n: m.fd for n, m in self.maps.items()}, externs)
        core = b""
        if linked.core_relos:
            # the kernel applies CO-RE records only alongside func_info; without it, relocate here
            if self.kernel_core and linked.func_info:
                core = pack_core_relos(linked.core_relos)
            else:
                from rawbpf.btf import core as _core
                from rawbpf.btf import kernel as _kernel

                assert spec.btf is not None
                try:
                    _core.relocate_program(linked.insns, linked.core_relos, spec.btf, _kernel.targets(),
                                           line_of=linked.source_line, prog_name=prog.name)
                except RelocationError as err:
                    raise err.with_context(where(spec.name, prog.section)) from None
        attach_btf_id = 0
        if prog.type in (ProgType.TRACING, ProgType.LSM, ProgType.EXT):
            attach_btf_id = self._attach_btf_id(prog)
        elif prog.type == ProgType.STRUCT_OPS:
            attach_btf_id = self._st_attach[prog.name][0]
        self.linked[prog.name] = linked
        return linked, core, attach_btf_id

    def _finish_program(self, prog: ProgramSpec, job: Tuple[LinkedProgram, bytes, int],
                        log_level: int) -> Program:
        """BPF_PROG_LOAD of a prepared program (safe on a worker thread: the syscall releases the GIL)."""
        spec = self.spec
        linked, core, attach_btf_id = job
        btf_fd = self.btf.fd if self.btf is not None else -1
        try:
            p = self._program_load(prog, linked, attach_btf_id, btf_fd, core, log_level)
        except VerifierError as err:
            explained = self._explain_core_failure(prog, err)
            if explained is not None:
                raise explained from err
            raise err.with_context(where(spec.name, prog.section)) from None
        except RawBPFError as err:
            raise err.with_context(where(spec.name, prog.section)) from None
        return p

    def _explain_core_failure(self, prog: ProgramSpec, err: VerifierError) -> Optional[RelocationError]:
        """A reachable instruction CO-RE could not relocate (poisoned with libbpf's ``call 0xbad2310``)
        becomes an error naming the type, the field path and the C source line."""
        if "unknown#195896080" not in err.log or self.spec.btf is None or err.insn_index is None:
            return None
        from rawbpf.btf import core as _core
        from rawbpf.btf import kernel as _kernel

        linked = self.linked.get(prog.name) or link(self.spec, prog.name)
        why = _core.explain_poison(linked.core_relos, self.spec.btf, err.insn_index, _kernel.targets(),
                                   line_of=linked.source_line, prog_name=prog.name)
        if not why:
            return None
        return RelocationError(why).with_context(where(self.spec.name, prog.section))

    def _program_load(self, prog: ProgramSpec, linked: LinkedProgram, attach_btf_id: int, btf_fd: int,
                      core: bytes, log_level: int) -> Program:
        spec = self.spec
        with_info = btf_fd >= 0 and _has("btf_func")  # sanitised BTF has no FUNCs for func_info to name
        return Program.load(
            prog.type,
            bytes(linked.insns),
            name=prog.name,
            license=prog.license or spec.license,
            expected_attach_type=self._st_attach[prog.name][1] if prog.name in self._st_attach
            else prog.expected_attach_type,
            attach_btf_id=attach_btf_id,
            kern_version=prog.kern_version,
            flags=prog.flags,
            btf_fd=btf_fd,
            func_info=pack_func_info(linked.func_info) if with_info else b"",
            line_info=pack_line_info(linked.line_info) if with_info else b"",
            core_relos=core if btf_fd >= 0 else b"",
            log_level=log_level,
            source_line=linked.source_line,
        )

    def _attach_btf_id(self, prog: ProgramSpec) -> int:
        from rawbpf import externs as _externs

        target = prog.attach_to
        if not target:
            raise ObjectError("no attach target after the prefix (e.g. tp_btf/sched_process_exec)"
                              ).with_context(where(self.spec.name, prog.section))
        if prog.type == ProgType.TRACING and prog.expected_attach_type == AttachType.TRACE_RAW_TP:
            name, kind = "btf_trace_" + target, "TYPEDEF"
        elif prog.type == ProgType.TRACING and prog.expected_attach_type == AttachType.TRACE_ITER:
            name, kind = "bpf_iter_" + target, "FUNC"
        elif prog.type == ProgType.LSM:
            name, kind = "bpf_lsm_" + target, "FUNC"
        else:
            name, kind = target, "FUNC"
        tid = _externs.vmlinux_type_id(name, kind)
        if not tid:
            raise ObjectError(f"attach target '{target}' is not in the kernel's BTF").with_context(
                where(self.spec.name, prog.section))
        return tid

    # -- attach --------------------------------------------------------------------------------------------

    def attach_all(self) -> List[Any]:
        """Attach every loaded program whose section names a target; returns the new Links.

        Programs with nothing to auto-attach (socket filters, xdp, a bare ``uprobe``) are skipped.
        On failure, links made by this call are detached again.
        """
        from rawbpf import attach as _attach
        from rawbpf.sections import split_tracepoint, split_uprobe

        made: List[Any] = []
        current = ""
        try:
            for name, prog in self.programs.items():
                current = name
                if name in self.links:
                    continue
                ps = self.spec.programs[name]
                kind, target = ps.attach_kind, ps.attach_to
                here = where(self.spec.name, ps.section)
                if kind == "tracepoint":
                    cat, tp = split_tracepoint(target)
                    if not cat:
                        raise ObjectError("tracepoint must be category/name").with_context(here)
                    lnk = _attach.attach_tracepoint(prog, cat, tp)
                elif kind == "raw_tracepoint":
                    if not target:
                        continue
                    lnk = _attach.attach_raw_tracepoint(prog, target)
                elif kind == "tracing":
                    lnk = _attach.attach_tracing(prog)
                elif kind in ("uprobe", "uretprobe"):
                    if not target:
                        continue
                    binary, sym, off = split_uprobe(target)
                    if not binary:
                        raise ObjectError("uprobe target must be binary:symbol[+offset]").with_context(here)
                    lnk = _attach.attach_uprobe(prog, binary, sym, off, retprobe=kind == "uretprobe")
                else:
                    continue
                self.links[name] = lnk
                made.append(lnk)
            current = ""
            made += self.register_struct_ops()
        except RawBPFError as err:
            for lnk in made:
                lnk.close()
            failed = self.spec.programs.get(current)
            for done in [n for n, lk in self.links.items() if any(lk is m for m in made)]:
                del self.links[done]
            for done in [n for n, r in self.struct_ops.items() if any(r is m for m in made)]:
                del self.struct_ops[done]
            section = failed.section if failed is not None else ""
            raise err.with_context(where(self.spec.name, section)) from None
        return made

    def register_struct_ops(self) -> List[Any]:
        """Register every struct_ops map not registered yet (attach_all does it after the programs):
        ``.struct_ops`` maps by updating key 0, ``.struct_ops.link`` maps through a BPF link. Returns the
        new registrations; on failure the ones made by this call are undone."""
        from rawbpf import attach as _attach

        made: List[Any] = []
        try:
            for name, plan in self.struct_ops_plans.items():
                if name in self.struct_ops:
                    continue
                mspec = self.spec.maps[name]
                here = where(self.spec.name, mspec.section)
                missing = [s.program for s in plan.slots if s.program not in self.programs]
                if missing:
                    raise ConfigError(f"struct_ops map '{name}' cannot be registered: program(s) "
                                      f"{', '.join(missing)} not loaded").with_context(here)
                value = plan.fill({s.program: self.programs[s.program].fd for s in plan.slots})
                what = f"register struct_ops map '{name}' (struct {plan.type_name})"
                try:
                    reg = _attach.register_struct_ops(self.maps[name], value, link=plan.link, what=what)
                except RawBPFError as err:
                    raise err.with_context(here) from None
                self.struct_ops[name] = reg
                made.append(reg)
        except BaseException:
            for reg in made:
                _quiet_close(reg)
            for done in [n for n, r in self.struct_ops.items() if any(r is m for m in made)]:
                del self.struct_ops[done]
            raise
        return made

    # -- pinning -------------------------------------------------------------------------------------------

    def _pin(self, fd: int, path: str, what: str, *, by_name: bool = False) -> None:
        parent = os.path.dirname(path)
        missing: List[str] = []
        p = parent
        while p and not os.path.exists(p):
            missing.append(p)
            p = os.path.dirname(p)
        bpffs.pin(fd, path, what)
        (self._by_name_pins if by_name else self._pins).append(path)
        self._pin_dirs.extend(missing)

    @property
    def pins(self) -> List[str]:
        """Every pin this collection created: maps pinned by name at load, then those made by :meth:`pin`."""
        return [*self._by_name_pins, *self._pins]

    def pin(self, directory: str) -> List[str]:
        """Pin every map (``dir/<map>``), program (``dir/progs/<prog>``) and link (``dir/links/<prog>``);
        dots in names become underscores (see :func:`pin_name`).

        Maps already pinned there (pinned by name) are left as they are. Everything pinned here is unpinned
        again by ``close()``. Returns the new pin paths.
        """
        new: List[str] = []
        for name, m in self.maps.items():
            path = os.path.join(directory, pin_name(name))
            if path in self.pins or os.path.exists(path):
                continue
            self._pin(m.fd, path, f"pin map '{name}'")
            new.append(path)
        for name, p in self.programs.items():
            path = os.path.join(directory, "progs", pin_name(name))
            self._pin(p.fd, path, f"pin program '{name}'")
            new.append(path)
        for name, lnk in self.links.items():
            path = os.path.join(directory, "links", pin_name(name))
            try:
                self._pin(lnk.fd, path, f"pin link of '{name}'")
            except RawBPFError as err:  # ioctl-attached tracepoints have no link object to pin
                log.debug("link of '%s' not pinned: %s", name, err)
                continue
            new.append(path)
        from rawbpf.attach import Link

        for name, reg in self.struct_ops.items():
            if not isinstance(reg, Link):  # a map-update registration has no link to pin
                continue
            path = os.path.join(directory, "links", pin_name(name))
            self._pin(reg.fd, path, f"pin struct_ops link of '{name}'")
            new.append(path)
        return new

    # -- lifetime ------------------------------------------------------------------------------------------

    def close(self, *, unpin: bool = True, keep_pinned_maps: bool = True) -> None:
        """Detach links, remove the pins :meth:`pin` made (``unpin``), close programs, maps and BTF.

        Maps declared ``pinning: LIBBPF_PIN_BY_NAME`` stay pinned for the next load, as with libbpf, unless
        ``keep_pinned_maps=False`` (a failed load never leaves them behind)."""
        if self._closed:
            return
        self._closed = True
        self.variables.close()
        for reg in self.struct_ops.values():  # unregister first: a map-update registration needs its map
            _quiet_close(reg)
        self.struct_ops.clear()
        for lnk in self.links.values():
            _quiet_close(lnk)
        self.links.clear()
        if unpin:
            doomed = self._pins if keep_pinned_maps else self.pins
            for path in reversed(doomed):
                try:
                    bpffs.unpin(path)
                except RawBPFError as err:
                    log.warning("unpin %s: %s", path, err)
            for d in sorted(set(self._pin_dirs), key=len, reverse=True):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        self._pins.clear()
        self._by_name_pins.clear()
        for p in self.programs.values():
            _quiet_close(p)
        self.programs.clear()
        for m in self.maps.values():
            _quiet_close(m)
        self.maps.clear()
        if self.btf is not None:
            _quiet_close(self.btf)
            self.btf = None

    def _close_at_collection(self) -> None:
        """Release the fds but keep the pins: a pin is how a program outlives the process that loaded it."""
        if not getattr(self, "_closed", True):
            self.close(unpin=False)


def where(obj: str, section: str = "") -> str:
    """The context of an error in an object: ``object 'x'`` or ``object 'x': section 'y'``."""
    return f"object '{obj}'" + (f": section '{section}'" if section else "")


def pin_name(name: str) -> str:
    """bpffs refuses '.' in names: ``globals.rodata`` is pinned as ``globals_rodata``, as libbpf does."""
    return name.replace(".", "_")


def _has(feature: str) -> bool:
    from rawbpf import features

    return features.has(feature)


def _btf_features(btf: Any) -> Any:
    """Which of the BTF kinds ``btf`` uses this kernel takes (each probed once per process; unused kinds
    are not probed at all)."""
    from rawbpf import features
    from rawbpf.btf import BtfFeatures, Kind

    kinds = set()
    global_func = qmark = signed_enum = False
    for t in btf.types[1:]:
        kinds.add(t.kind)
        if t.kind == Kind.FUNC and t.linkage == 1:
            global_func = True
        elif t.kind == Kind.DATASEC and t.name.startswith("?"):
            qmark = True
        elif t.kind == Kind.ENUM and t.kind_flag:
            signed_enum = True

    def need(name: str, used: bool) -> bool:
        return features.has(name) if used else True

    return BtfFeatures(
        func=need("btf_func", bool(kinds & {Kind.FUNC, Kind.FUNC_PROTO})),
        func_global=need("btf_func_global", global_func),
        datasec=need("btf_datasec", bool(kinds & {Kind.VAR, Kind.DATASEC})),
        qmark_datasec=need("btf_qmark_datasec", qmark),
        float=need("btf_float", Kind.FLOAT in kinds),
        decl_tag=need("btf_decl_tag", Kind.DECL_TAG in kinds),
        type_tag=need("btf_type_tag", Kind.TYPE_TAG in kinds),
        enum64=need("btf_enum64", Kind.ENUM64 in kinds or signed_enum),
    )


# Below this many instructions in all, the programs verify in less time than it takes to start the worker
# threads (on a busy machine a new thread may wait milliseconds for a CPU): they load in order on the caller.
SMALL_OBJECT_INSNS = 1024


def load_workers(count: int, insns: int = SMALL_OBJECT_INSNS) -> int:
    """How many programs verify at once: one per CPU, one for ``count`` programs of fewer than
    :data:`SMALL_OBJECT_INSNS` ``insns`` in all (``RAWBPF_LOAD_THREADS`` overrides both; 1 loads in order on
    the calling thread)."""
    env = os.environ.get("RAWBPF_LOAD_THREADS", "")
    if env:
        try:
            limit = int(env)
        except ValueError:
            limit = 1
    else:
        limit = (os.cpu_count() or 1) if insns >= SMALL_OBJECT_INSNS else 1
    return max(1, min(count, limit))


def _quiet_close(obj: Any) -> None:
    try:
        obj.close()
    except Exception as err:
        log.debug("close %r: %s", obj, err)


def _struct_ops_programs(spec: CollectionSpec, wanted: List[str], *, explicit: bool) -> List[str]:
    """The programs to load, struct_ops ones as libbpf picks them: a struct_ops program a struct_ops map names
    is loaded even from a ``SEC("?struct_ops/...")`` section (the map needs it), and one no map names is
    refused (it has no member to be loaded for), unless its section starts with ``?``."""
    if not any(p.type == ProgType.STRUCT_OPS for p in spec.programs.values()):
        return wanted  # nothing to add or refuse: the programs as asked, in object order
    from rawbpf import structops

    used = structops.used_programs(spec.maps)
    if not explicit:
        wanted = [n for n, p in spec.programs.items()
                  if n in wanted or (p.type == ProgType.STRUCT_OPS and n in used)]
    for name in wanted:
        prog = spec.programs[name]
        if prog.type == ProgType.STRUCT_OPS and name not in used:
            raise ObjectError(f"struct_ops program '{name}' is not used by any struct_ops map (set it as a "
                              "member of a struct in SEC(\".struct_ops\") or SEC(\".struct_ops.link\"))"
                              ).with_context(where(spec.name, prog.section))
    return wanted


def _private_copy(spec: CollectionSpec) -> CollectionSpec:
    """A copy whose map contents can be changed without touching the caller's spec."""
    out = copy.copy(spec)
    out.maps = {}
    for name, m in spec.maps.items():
        mc = copy.copy(m)
        if m.data is not None:
            mc.data = bytearray(m.data)
        mc.contents = list(m.contents)
        out.maps[name] = mc
    return out


def load(path: str, **kwargs: Any) -> Collection:
    """Parse and load an object in one call (see :meth:`Collection.load` for the options)."""
    from rawbpf.elf import load_spec

    return Collection.load(load_spec(path), **kwargs)
