"""Collection.load against the real kernel: what the kernel ends up with for each corpus object."""

from __future__ import annotations

import os
import struct
import subprocess
import threading
from pathlib import Path

import pytest

from rawbpf import bpffs
from rawbpf.collection import Collection
from rawbpf.consts import BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, MapType
from rawbpf.elf import load_spec
from rawbpf.errors import ConfigError, ObjectError, RawBPFError, VerifierError
from rawbpf.maps import Map

DATA = Path(__file__).resolve().parent.parent / "data"
PACKET = bytes(64)  # skb->len is 50 after the 14-byte Ethernet header


def load(name: str, **kw):  # type: ignore[no-untyped-def]
    return Collection.load(load_spec(DATA / name), **kw)


def test_subprograms_run() -> None:
    with load("subprogs.o") as c:
        assert c.programs["prog_a"].test_run(PACKET).retval == 1117
        assert c.programs["prog_b"].test_run(PACKET).retval == 176
        assert c.variables["result_a"] == 1117 and c.variables["result_b"] == 176


def test_callbacks_run() -> None:
    with load("callbacks.o") as c:
        assert c.programs["run_loop"].test_run(PACKET).retval == 45
        assert c.variables["loop_sum"] == 45
        vals = c.maps["values"]
        for i, v in enumerate([5, 7, 11]):
            vals.update(i, struct.pack("<Q", v))
        assert c.programs["run_for_each"].test_run(PACKET).retval == 23
        assert c.variables["each_visited"] == 8


def test_constants_set_before_load_and_rodata_frozen() -> None:
    consts = {"cfg_u32": 99, "cfg_u64": "0x55", "cfg_bool": "true", "cfg_name": "hello"}
    spec = load_spec(DATA / "globals.o")
    with Collection.load(spec, constants=consts) as c:
        assert c.programs["copy_globals"].test_run(PACKET).retval == 99
        v = c.variables
        assert (v["bss_u32"], v["bss_u64"], v["bss_bool"], v["bss_name"]) == (99, 0x55, True, "hello")
        assert v["bss_str"] == "from .rodata.str1.1"
        assert v["data_counter"] == 43 and v["custom_data"] == 100 + 0xC0FFEE
        assert v["cfg_u32"] == 99  # read back from the kernel's rodata map
        ro = c.maps["globals.rodata"]
        assert ro.flags & BPF_F_RDONLY_PROG and ro.flags & BPF_F_MMAPABLE
        with pytest.raises(ConfigError, match="read-only"):
            v["cfg_u32"] = 1
        with pytest.raises(RawBPFError):  # frozen: not even the syscall may write it
            ro.update(0, bytes(ro.value_size))
    # the caller's spec keeps its own initial values
    assert int.from_bytes(spec.variables["cfg_u32"].value(spec), "little") == 7


def test_globals_written_at_run_time_reach_the_program() -> None:
    with load("globals.o") as c:
        c.variables["target_tgid"] = os.getpid()
        c.attach_all()
        for _ in range(3):
            os.getppid()
        assert c.variables["getppid_hits"] >= 3
        c.variables["data_counter"] = 1000
        c.programs["copy_globals"].test_run(PACKET)
        assert c.variables["data_counter"] == 1001


def _core_result(raw: bytes) -> dict:
    names = [
        "ran",
        "pid",
        "tgid",
        "parent_tgid",
        "start_time",
        "comm",
        "pid_exists",
        "missing_exists",
        "missing_value",
        "pid_size",
        "comm_size",
        "pid_signed",
        "pid_offset",
        "in_execve",
        "task_exists",
        "no_type_exists",
        "task_size",
        "task_type_id",
        "sid_exists",
        "sid_value",
        "flavor_tgid",
        "flavor_parent_tgid",
    ]
    vals = struct.unpack("<4IQ16s16I", raw[: struct.calcsize("<4IQ16s16I")])
    return dict(zip(names, vals))


@pytest.mark.parametrize("kernel_core", [True, False], ids=["kernel-core", "user-core"])
def test_core_reads_match_proc(kernel_core: bool) -> None:
    from rawbpf.externs import vmlinux

    with load("core.o", kernel_core=kernel_core) as c:
        assert c.kernel_core is kernel_core
        c.variables["target_tgid"] = os.getpid()
        c.attach_all()
        tid = threading.get_native_id()
        os.getppid()
        r = _core_result(c.variables.raw("result"))
    assert r["ran"] == 1
    assert (r["pid"], r["tgid"], r["parent_tgid"]) == (tid, os.getpid(), os.getppid())
    assert r["comm"].rstrip(b"\0").decode() == Path("/proc/self/comm").read_text().strip()
    assert (r["flavor_tgid"], r["flavor_parent_tgid"]) == (os.getpid(), os.getppid())
    assert (r["pid_exists"], r["missing_exists"], r["missing_value"]) == (1, 0, 0)
    assert (r["pid_size"], r["comm_size"], r["pid_signed"], r["in_execve"]) == (4, 16, 1, 0)
    assert (r["task_exists"], r["no_type_exists"], r["sid_exists"], r["sid_value"]) == (1, 0, 1, 3)
    vm = vmlinux()
    task = vm.find("task_struct")
    assert task is not None
    assert r["task_type_id"] == task.id and r["task_size"] == task.size
    assert r["pid_offset"] == next(m.bits_offset // 8 for m in task.members if m.name == "pid")
    ticks = os.sysconf("SC_CLK_TCK")
    proc_start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    assert abs(r["start_time"] * ticks // 10**9 - proc_start) <= 2


@pytest.mark.parametrize("obj", ["core.o", "tracepoints5.o"])
def test_kernel_and_user_core_give_identical_xlated(obj: str) -> None:
    with load(obj, kernel_core=True) as k, load(obj, kernel_core=False) as u:
        assert set(k.programs) == set(u.programs)
        for name in k.programs:
            ki, ui = k.programs[name].info(), u.programs[name].info()
            assert ki.tag == ui.tag, name
            assert _without_map_ids(ki.xlated) == _without_map_ids(ui.xlated), name


def _without_map_ids(xlated: bytes) -> bytes:
    """The kernel dumps map references as map ids, which differ between two loads: blank them."""
    out = bytearray(xlated)
    for off in range(0, len(out) - 8, 8):
        if out[off] == 0x18 and (out[off + 1] >> 4) in (1, 2):  # ld_imm64 of a map (fd or value)
            out[off + 4 : off + 8] = bytes(4)
    return bytes(out)


def test_maps_created_as_declared(pin_dir: Path) -> None:
    with load("maps_btf.o", pin_dir=str(pin_dir)) as c:
        m = c.maps
        assert m["events"].type == MapType.RINGBUF and m["events"].max_entries == 2 * os.sysconf(
            "SC_PAGE_SIZE"
        )
        assert m["lru"].type == MapType.LRU_HASH and (m["lru"].key_size, m["lru"].value_size) == (8, 4)
        assert m["bloom"].info().map_extra == 3
        assert m["perf_events"].max_entries == os.cpu_count() or m["perf_events"].max_entries >= 1
        assert c.programs["tail_entry"].test_run(PACKET).retval == 11  # prog array filled from .values
        inner_ids = {m["inner_b"].id, m["inner_a"].id}
        got = {int.from_bytes(m["outer_array"].lookup(i) or b"", "little") for i in (0, 1)}
        assert got == inner_ids
        assert (pin_dir / "pinned_hash").exists()
        # a second load reuses the pinned map
        with load("maps_btf.o", pin_dir=str(pin_dir)) as c2:
            assert c2.maps["pinned_hash"].id == m["pinned_hash"].id
            m["pinned_hash"].update(7, bytes(16))
            assert c2.maps["pinned_hash"].lookup(7) == bytes(16)
        assert (pin_dir / "pinned_hash").exists()
    # pinned by name: it outlives the collection (libbpf semantics) and keeps its contents for the next load
    assert (pin_dir / "pinned_hash").exists()
    with load("maps_btf.o", pin_dir=str(pin_dir)) as c3:
        assert c3.maps["pinned_hash"].lookup(7) == bytes(16)
    assert bpffs.unpin(pin_dir / "pinned_hash")
    # a load that creates the pin and is closed with keep_pinned_maps=False removes it again
    c4 = load("maps_btf.o", pin_dir=str(pin_dir))
    assert (pin_dir / "pinned_hash").exists() and str(pin_dir / "pinned_hash") in c4.pins
    c4.close(keep_pinned_maps=False)
    assert not (pin_dir / "pinned_hash").exists()


def test_incompatible_pinned_map_refused(pin_dir: Path) -> None:
    with Map.create(MapType.HASH, 4, 8, 128, name="pinned_hash") as other:
        bpffs.pin(other.fd, pin_dir / "pinned_hash")
        try:
            with pytest.raises(
                ObjectError, match=r"map 'pinned_hash': pinned map .* incompatible \(value_size 8 != 16"
            ):
                load("maps_btf.o", pin_dir=str(pin_dir))
        finally:
            bpffs.unpin(pin_dir / "pinned_hash")
    assert sorted(os.listdir(pin_dir)) == []


def test_map_the_kernel_refuses_leaves_nothing(pin_dir: Path) -> None:
    spec = load_spec(DATA / "maps_btf.o")
    spec.maps["percpu"].value_size = 1 << 30
    with pytest.raises(
        ObjectError, match=r"^object 'maps_btf': section '.maps': create map 'percpu'"
    ) as info:
        Collection.load(spec, pin_dir=str(pin_dir))
    assert "\n" not in str(info.value)
    assert not pin_dir.exists() or os.listdir(pin_dir) == []


def test_verifier_error_names_the_source_line() -> None:
    with pytest.raises(VerifierError) as info:
        load("verifier_reject.o")
    err = info.value
    assert "verifier_reject.c:21" in err.summary()
    assert "invalid mem access" in err.summary()
    assert "\n" not in err.summary()


def test_unknown_section_refused_unless_left_out() -> None:
    with pytest.raises(ObjectError, match=r"section 'rawbpf_unknown/thing': unknown program section"):
        load("sections_misc.o")
    with load("sections_misc.o", programs=["misc_socket", "misc_xdp", "misc_tc"]) as c:
        assert set(c.programs) == {"misc_socket", "misc_xdp", "misc_tc"}


def test_missing_tracepoint_names_section_and_detaches() -> None:
    spec = load_spec(DATA / "globals.o")
    spec.programs["on_getppid"].attach_to = "syscalls/sys_enter_rawbpf_nonexistent"
    with Collection.load(spec) as c:
        with pytest.raises(RawBPFError, match=r"object 'globals': section 'tp/syscalls/sys_enter_getppid'"):
            c.attach_all()
        assert c.links == {}


def test_attach_all_every_kind_fires() -> None:
    hit_names = [
        "tp",
        "tp_second",
        "tracepoint",
        "raw_tp",
        "raw_tracepoint",
        "tp_btf",
        "uprobe",
        "uretprobe",
        "uprobe_manual",
    ]
    with load("attach_kinds.o") as c:
        c.variables["target_tgid"] = os.getpid()
        links = c.attach_all()
        assert set(c.links) == set(c.programs) - {"uprobe_manual"} and len(links) == 8
        os.getppid()
        subprocess.run(["true"], check=True)
        hits = dict(zip(hit_names, struct.unpack("<9Q", c.variables.raw("hits"))))
    assert all(hits[n] >= 1 for n in hit_names if n != "uprobe_manual"), hits
    assert hits["uprobe_manual"] == 0


def test_pin_everything_and_unpin_on_close(pin_dir: Path) -> None:
    with load("tracepoints5.o") as c:
        c.attach_all()
        pins = c.pin(str(pin_dir))
        assert len(pins) == 11
        assert (pin_dir / "progs" / "tp5_exec").exists() and (pin_dir / "links" / "tp5_exec").exists()
    assert not pin_dir.exists() or list(pin_dir.rglob("*")) == []


def test_failure_after_partial_load_closes_everything(pin_dir: Path) -> None:
    # maps_btf's pinned_hash gets pinned and several programs load before the last one fails
    spec = load_spec(DATA / "maps_btf.o")
    spec.programs["perf_out"].insns = spec.programs["perf_out"].insns[:-8]  # drop its exit: verifier refuses
    with pytest.raises(VerifierError, match="load program 'perf_out'"):
        Collection.load(spec, pin_dir=str(pin_dir))
    assert not pin_dir.exists() or list(pin_dir.rglob("*")) == []


def test_legacy_maps_load_and_run() -> None:
    with load("maps_legacy.o") as c:
        assert c.maps["legacy_hash"].type == MapType.HASH and c.maps["legacy_array"].type == MapType.ARRAY
        assert c.programs["use_legacy"].test_run(PACKET).retval == 1
        assert c.programs["use_legacy"].test_run(PACKET).retval == 2
        assert c.maps["legacy_hash"].lookup(1) == struct.pack("<Q", 50)


def test_kernel_refusal_names_object_and_section() -> None:
    # a program every kernel refuses (fentry, refused on some hosts, loads on a stock 6.1)
    with pytest.raises(
        RawBPFError,
        match=r"^object 'verifier_reject': section 'socket': load program 'deref_unchecked'",
    ) as info:
        load("verifier_reject.o")
    assert "\n" not in info.value.summary()


def test_old_kernel_paths_on_this_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend the kernel lacks BTF FUNC/DATASEC/…, kernel CO-RE and mmapable arrays: BTF is sanitised,
    func/line info dropped, CO-RE done in user space, globals read through syscalls; programs still work."""
    from rawbpf import features

    real = features.has
    missing = {"kernel_core", "mmapable_array"}

    def has(name: str) -> bool:
        if name in missing or (name.startswith("btf_") and name != "btf"):
            return False
        return real(name)

    monkeypatch.setattr(features, "has", has)
    with load("globals.o", constants={"cfg_u32": 5}) as c:
        assert not c.maps["globals.bss"].flags & BPF_F_MMAPABLE
        assert c.programs["copy_globals"].test_run(PACKET).retval == 5
        assert c.variables["bss_u32"] == 5
        c.variables["data_counter"] = 7
        assert c.variables["data_counter"] == 7
    with load("core.o") as c:
        assert not c.kernel_core
        c.variables["target_tgid"] = os.getpid()
        c.attach_all()
        os.getppid()
        r = _core_result(c.variables.raw("result"))
    assert (r["ran"], r["tgid"], r["parent_tgid"]) == (1, os.getpid(), os.getppid())
