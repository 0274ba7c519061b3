"""How loading and attaching fail, with the kernel faked behind rawbpf's one syscall entry (no root):
the verifier log retry and its growth, a map refused halfway, a program refused after the maps exist,
attach refused on the third link. Each leaves no descriptor open, as the fake kernel counts them."""

from __future__ import annotations

import ctypes
import errno
from pathlib import Path

import pytest
from fake_kernel import FakeKernel

from rawbpf import _sys, programs
from rawbpf._types import ProgLoadAttr
from rawbpf.collection import Collection
from rawbpf.consts import Cmd
from rawbpf.elf import load_spec
from rawbpf.errors import ObjectError, SyscallError, VerifierError

DATA = Path(__file__).resolve().parents[1] / "data"

VERIFIER_LOG = "".join(f"{i}: (b7) r0 = {i}\n" for i in range(40_000)) + \
    "40000: (85) call bpf_nope#12345\ninvalid func unknown#12345\nprocessed 40001 insns\n"


def test_fake_kernel_is_the_backend(fake_kernel: FakeKernel) -> None:
    with Collection.load(load_spec(DATA / "maps_legacy.o")) as coll:
        assert {k for _, k in fake_kernel.leaked()} == {"map", "program", "btf"}
        assert len(coll.maps) == 2
    assert fake_kernel.leaked() == [] and fake_kernel.bad_closes == []


def test_verifier_log_retry_grows_to_the_size_the_kernel_reports(fake_kernel: FakeKernel) -> None:
    fake_kernel.refuse(Cmd.PROG_LOAD, errno.EACCES, log=VERIFIER_LOG)
    with pytest.raises(VerifierError) as err:
        Collection.load(load_spec(DATA / "verifier_reject.o"))
    sizes = [c.log_size for c in fake_kernel.bpf_calls(Cmd.PROG_LOAD)]
    # first without a log; then the starting buffer, too small (ENOSPC); then what log_true_size asked for
    assert sizes[0] == 0 and sizes[1] == programs.LOG_BUF_START
    assert sizes[2] == max(len(VERIFIER_LOG) + 1 + 1, 4 * programs.LOG_BUF_START) and len(sizes) == 3
    assert err.value.log == VERIFIER_LOG  # the whole log, not the truncated first try
    assert err.value.errno == errno.EACCES and err.value.insn_index == 40000
    assert "verifier rejected program: invalid func unknown#12345" in str(err.value)
    assert str(err.value).startswith("object 'verifier_reject'")
    assert fake_kernel.leaked() == [] and fake_kernel.bad_closes == []


def test_verifier_log_grows_fourfold_when_the_kernel_does_not_say(fake_kernel: FakeKernel) -> None:
    text = "x" * (3 * programs.LOG_BUF_START) + "\nfinal reason\n"

    def old_kernel(attr: ProgLoadAttr) -> int:
        if not attr.log_level:
            return -errno.EINVAL
        size, buf = int(attr.log_size), int(attr.log_buf)
        data = text.encode()[: size - 1] + b"\0"
        ctypes.memmove(buf, data, len(data))  # truncated, and log_true_size left 0 (before Linux 6.4)
        return -errno.ENOSPC if size <= len(text) else -errno.EINVAL

    fake_kernel.on(Cmd.PROG_LOAD, old_kernel)
    with pytest.raises(VerifierError) as err:
        Collection.load(load_spec(DATA / "verifier_reject.o"))
    sizes = [c.log_size for c in fake_kernel.bpf_calls(Cmd.PROG_LOAD)]
    assert sizes == [0, programs.LOG_BUF_START, 4 * programs.LOG_BUF_START]
    assert err.value.log == text and err.value.reason == "final reason"
    assert fake_kernel.leaked() == []


def test_refusal_before_the_verifier_keeps_the_first_error(fake_kernel: FakeKernel,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sys, "has_bpf_caps", lambda: False)  # an unprivileged caller
    fake_kernel.refuse(Cmd.PROG_LOAD, errno.EPERM)  # no log at all: privileges, not the verifier
    with pytest.raises(SyscallError) as err:
        Collection.load(load_spec(DATA / "verifier_reject.o"))
    assert not isinstance(err.value, VerifierError) and err.value.errno == errno.EPERM
    assert "need CAP_BPF/CAP_PERFMON or root" in str(err.value)
    assert fake_kernel.leaked() == []


def test_map_refused_halfway_closes_the_maps_before_it(fake_kernel: FakeKernel) -> None:
    spec = load_spec(DATA / "maps_btf.o")
    names = list(spec.maps)
    victim = names[len(names) // 2]
    fake_kernel.refuse(Cmd.MAP_CREATE, errno.ENOMEM, name=victim[:15])
    with pytest.raises(ObjectError) as err:
        Collection.load(spec)
    assert str(err.value).startswith("object 'maps_btf'")
    assert "cannot allocate memory" in str(err.value).lower()
    created = [c for c in fake_kernel.bpf_calls(Cmd.MAP_CREATE) if c.result >= 0]
    assert len(created) >= len(names) // 2  # the maps before it were made, then all closed again
    assert not fake_kernel.bpf_calls(Cmd.PROG_LOAD)
    assert fake_kernel.leaked() == [] and fake_kernel.bad_closes == []


def test_program_refused_after_maps_exist_closes_everything(fake_kernel: FakeKernel) -> None:
    spec = load_spec(DATA / "maps_btf.o")
    third = list(spec.programs)[2]
    fake_kernel.refuse(Cmd.PROG_LOAD, errno.EINVAL, name=third[:15], log="0: (95) exit\nR0 !read_ok\n")
    with pytest.raises(VerifierError) as err:
        Collection.load(spec)
    assert err.value.reason == "R0 !read_ok" and f"load program '{third}'" in str(err.value)
    made = [c for c in fake_kernel.calls if c.result > 0 and c.kind == "bpf"]
    kinds = {Cmd(c.cmd) for c in made}
    assert {Cmd.BTF_LOAD, Cmd.MAP_CREATE, Cmd.PROG_LOAD} <= kinds
    # the two programs before it loaded (one after it may have too, verifying in parallel), then all closed
    assert len([c for c in made if c.cmd == Cmd.PROG_LOAD]) >= 2
    assert fake_kernel.leaked() == [] and fake_kernel.bad_closes == []


def _fake_tracefs(root: Path, spec_path: Path) -> str:
    for i, p in enumerate(load_spec(spec_path).programs.values()):
        cat, _, name = p.attach_to.partition("/")
        d = root / "events" / cat / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "id").write_text(f"{100 + i}\n")
    return str(root)


def test_attach_refused_on_the_third_link_detaches_the_first_two(fake_kernel: FakeKernel, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    obj = DATA / "tracepoints5.o"
    tracefs = _fake_tracefs(tmp_path, obj)
    monkeypatch.setattr("rawbpf.attach.tracefs_root", lambda what="": tracefs)
    fake_kernel.refuse(Cmd.LINK_CREATE, errno.EPERM, nth=3)
    coll = Collection.load(load_spec(obj), kernel_core=True)
    loaded = {fd for fd, kind in fake_kernel.leaked()}
    with pytest.raises(SyscallError) as err:
        coll.attach_all()
    assert err.value.errno == errno.EPERM
    assert coll.links == {}
    assert len(fake_kernel.bpf_calls(Cmd.LINK_CREATE)) == 3
    # the two links, the three perf events: all closed; the maps and programs are still the collection's
    assert {fd for fd, _ in fake_kernel.leaked()} == loaded
    coll.close()
    assert fake_kernel.leaked() == [] and fake_kernel.bad_closes == []


def test_btf_refused_loads_without_btf_after_one_warning(fake_kernel: FakeKernel,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """Like libbpf, BTF is optional when nothing needs it in the kernel: the object loads without it."""
    fake_kernel.refuse(Cmd.BTF_LOAD, errno.EINVAL, log="magic: 0xeb9f\n[3] FUNC f type_id=2 Invalid func\n")
    spec = load_spec(DATA / "maps_btf.o")
    with caplog.at_level("WARNING", logger="rawbpf"), Collection.load(spec) as coll:
        assert coll.btf is None and set(coll.programs) == set(spec.programs)
        assert fake_kernel.bpf_calls(Cmd.MAP_CREATE)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["object 'maps_btf': the kernel refused its BTF ([3] FUNC f type_id=2 Invalid func); "
                        "loading without BTF"]
    assert fake_kernel.leaked() == [] and fake_kernel.bad_closes == []


@pytest.mark.parametrize("threads", ["1", "4"])
def test_programs_keep_object_order_and_first_refusal_wins(
        fake_kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch, threads: str) -> None:
    """Verifying on worker threads changes neither the programs' order nor which refusal is reported."""
    monkeypatch.setenv("RAWBPF_LOAD_THREADS", threads)
    spec = load_spec(DATA / "maps_btf.o")
    with Collection.load(spec) as coll:
        assert list(coll.programs) == list(spec.programs)
    second, last = list(spec.programs)[1], list(spec.programs)[-1]
    fake_kernel.refuse(Cmd.PROG_LOAD, errno.EINVAL, name=last[:15], log="0: (95) exit\nR0 !read_ok\n")
    fake_kernel.refuse(Cmd.PROG_LOAD, errno.EINVAL, name=second[:15], log="0: (95) exit\nR1 !read_ok\n")
    with pytest.raises(VerifierError) as err:
        Collection.load(spec)
    assert err.value.reason == "R1 !read_ok" and f"load program '{second}'" in str(err.value)
    assert fake_kernel.leaked() == [] and fake_kernel.bad_closes == []


def test_longest_programs_are_sent_to_the_verifier_first(fake_kernel: FakeKernel,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """With worker threads the longest programs start verifying first (a long one sent last would keep one
    CPU busy after the others are done); the collection still lists them in object order."""
    monkeypatch.setenv("RAWBPF_LOAD_THREADS", "2")
    spec = load_spec(DATA / "maps_btf.o")
    by_length = sorted(spec.programs.values(), key=lambda p: -p.insn_count)
    assert by_length[1].insn_count > by_length[2].insn_count  # the object has a clear top two
    with Collection.load(spec) as coll:
        assert list(coll.programs) == list(spec.programs)
    sent = [c.name for c in fake_kernel.bpf_calls(Cmd.PROG_LOAD) if c.name in spec.programs]
    # two workers: the first two calls are the first two jobs, whichever thread runs first
    assert set(sent[:2]) == {by_length[0].name, by_length[1].name}
    assert fake_kernel.leaked() == [] and fake_kernel.bad_closes == []


def test_small_objects_load_on_the_calling_thread(fake_kernel: FakeKernel,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """An object of a few hundred instructions verifies quicker than worker threads start: by default its
    programs load in order on the caller; a large one gets a thread per CPU; RAWBPF_LOAD_THREADS decides
    for both when set."""
    from rawbpf.collection import SMALL_OBJECT_INSNS, load_workers

    monkeypatch.delenv("RAWBPF_LOAD_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert load_workers(5, SMALL_OBJECT_INSNS - 1) == 1
    assert load_workers(5, SMALL_OBJECT_INSNS) == 4 and load_workers(2, 24_000) == 2
    monkeypatch.setenv("RAWBPF_LOAD_THREADS", "3")
    assert load_workers(5, 10) == 3
    monkeypatch.delenv("RAWBPF_LOAD_THREADS")
    spec = load_spec(DATA / "maps_btf.o")
    assert sum(p.insn_count for p in spec.programs.values()) < SMALL_OBJECT_INSNS
    with Collection.load(spec) as coll:
        assert list(coll.programs) == list(spec.programs)
    sent = [c.name for c in fake_kernel.bpf_calls(Cmd.PROG_LOAD) if c.name in spec.programs]
    assert sent == list(spec.programs)  # in object order: threads would send the longest (use_maps) first
    assert fake_kernel.leaked() == [] and fake_kernel.bad_closes == []
